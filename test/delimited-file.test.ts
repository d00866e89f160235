import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  DelimitedFileError,
  readDelimitedFile,
  type DelimitedFileOptions,
  type DelimitedRecord,
} from '../src/sources/delimited-file.ts';

let folder: string;
let fileCount = 0;

before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'delimited-file-test-'));
});

after(async () => {
  await rm(folder, { recursive: true, force: true });
});

/** Writes the bytes to a new file in the test folder and returns its path. */
async function writeTestFile(content: string | Buffer): Promise<string> {
  fileCount += 1;

  const path = join(folder, `file-${fileCount}.txt`);

  await writeFile(path, content);

  return path;
}

async function readAll(
  content: string | Buffer,
  options: Partial<DelimitedFileOptions> = {},
): Promise<DelimitedRecord[]> {
  const path = await writeTestFile(content);
  const records: DelimitedRecord[] = [];

  const reader = readDelimitedFile({ path, encoding: 'utf8', separator: ';', ...options });

  for await (const record of reader) {
    records.push(record);
  }

  return records;
}

describe('readDelimitedFile', () => {
  test('onHeader sees the header before any record', async () => {
    const calls: Array<[string[], number]> = [];

    await readAll('\nAno;Nome\n', {
      onHeader: (fieldNames, lineNumber) => calls.push([fieldNames, lineNumber]),
    });

    assert.deepEqual(calls, [[['ano', 'nome'], 2]]);
  });

  test('onHeader error ends the reading', async () => {
    const reading = readAll('Ano;Nome\n2021;X\n', {
      onHeader: () => {
        throw new Error('unexpected header');
      },
    });

    await assert.rejects(reading, /unexpected header/);
  });

  test('keys values by the derived field names', async () => {
    const records = await readAll('Ano;CNPJ IF;Instituição financeira\n2021; ;BANCO X\n');

    assert.deepEqual(records, [
      { lineNumber: 2, values: { ano: '2021', cnpj_if: ' ', instituicao_financeira: 'BANCO X' } },
    ]);
  });

  test('drops the empty field after a trailing separator', async () => {
    const records = await readAll('a;b;\n1;2;\n3;;\n');

    assert.deepEqual(
      records.map((record) => record.values),
      [
        { a: '1', b: '2' },
        { a: '3', b: '' },
      ],
    );
  });

  test('counts a short line with a trailing separator as short', async () => {
    await assert.rejects(readAll('a;b;c;\n1;2;\n'), /line 2 has 2 fields but the header has 3/);
  });

  test('keeps an empty last value when lines have no trailing separator', async () => {
    const records = await readAll('a|b\n1|\n', { separator: '|' });

    assert.deepEqual(records[0]?.values, { a: '1', b: '' });
  });

  test('accepts data lines without the trailing separator of the header', async () => {
    const records = await readAll('a;b;\n1;2\n');

    assert.deepEqual(records[0]?.values, { a: '1', b: '2' });
  });

  test('reads CRLF line endings', async () => {
    const records = await readAll('a;b\r\n1;2\r\n3;4');

    assert.deepEqual(
      records.map((record) => record.values),
      [
        { a: '1', b: '2' },
        { a: '3', b: '4' },
      ],
    );
  });

  test('skips empty lines and keeps counting them', async () => {
    const records = await readAll('\na;b\n\n1;2\r\n\r\n3;4\n\n');

    assert.deepEqual(
      records.map((record) => record.lineNumber),
      [4, 6],
    );
  });

  test('skips a UTF-8 byte order mark', async () => {
    const records = await readAll('\uFEFFSegmento\tCNPJ\nS1\t0\n', { separator: '\t' });

    assert.deepEqual(records[0]?.values, { segmento: 'S1', cnpj: '0' });
  });

  test('decodes ISO-8859-1 byte by byte', async () => {
    const header = Buffer.from('Trimestre;Quantidade de clientes \x96 CCS;\n', 'latin1');
    const line = Buffer.from('1\xBA;12;\n', 'latin1');

    const records = await readAll(Buffer.concat([header, line]), { encoding: 'latin1' });

    assert.deepEqual(records[0]?.values, { trimestre: '1º', quantidade_de_clientes_ccs: '12' });
  });

  test('decodes a UTF-8 character split across read chunks', async () => {
    // createReadStream reads 64 KiB chunks: put a 2-byte character across the boundary.
    const filler = 'x'.repeat(64 * 1024 - 'a\n'.length - 1);

    const records = await readAll(`a\n${filler}ã\n`);

    assert.equal(records[0]?.values.a, `${filler}ã`);
  });

  test('yields nothing for an empty file', async () => {
    assert.deepEqual(await readAll(''), []);
  });

  test('yields nothing for a header without data lines', async () => {
    assert.deepEqual(await readAll('a;b;\n'), []);
  });

  test('works as the source of Readable.from', async () => {
    const path = await writeTestFile('a|b\n1|2\n');
    const stream = Readable.from(readDelimitedFile({ path, encoding: 'utf8', separator: '|' }));

    const records = await stream.toArray();

    assert.deepEqual(records, [{ lineNumber: 2, values: { a: '1', b: '2' } }]);
  });

  test('rejects a line with more fields than the header', async () => {
    await assert.rejects(readAll('a;b\n1;2;3\n'), (error: DelimitedFileError) => {
      assert.ok(error instanceof DelimitedFileError);
      assert.equal(error.lineNumber, 2);
      assert.match(error.message, /line 2 has 3 fields but the header has 2/);

      return true;
    });
  });

  test('rejects a line with fewer fields than the header', async () => {
    await assert.rejects(readAll('a;b;c\n1;2\n'), /line 2 has 2 fields but the header has 3/);
  });

  test('rejects a header without letters or digits', async () => {
    await assert.rejects(readAll('a;--;c\n1;2;3\n'), /header "--" in column 2 has no letters/);
  });

  test('rejects headers that derive the same field name', async () => {
    await assert.rejects(readAll('Ano;ano\n1;2\n'), /header "ano" in column 2 repeats/);
  });

  test('rejects invalid UTF-8', async () => {
    const content = Buffer.concat([Buffer.from('a\nok\n'), Buffer.from([0xc3, 0x28, 0x0a])]);

    await assert.rejects(readAll(content), (error: Error) => {
      assert.ok(error instanceof DelimitedFileError);
      assert.match(error.message, /invalid UTF-8/);

      return true;
    });
  });

  test('rejects a UTF-8 byte order mark when reading ISO-8859-1', async () => {
    await assert.rejects(readAll('\uFEFFa;b\n', { encoding: 'latin1' }), /byte order mark/);
  });

  test('rejects a line longer than maxLineChars', async () => {
    await assert.rejects(
      readAll(`a\n${'x'.repeat(100)}\n`, { maxLineChars: 10 }),
      /line 2 is longer than 10 characters/,
    );
  });

  test('rejects a last line without a line break longer than maxLineChars', async () => {
    await assert.rejects(
      readAll(`a\n${'x'.repeat(100)}`, { maxLineChars: 10 }),
      /line 2 is longer than 10 characters/,
    );
  });

  test('rejects a separator of more than one character', async () => {
    await assert.rejects(readAll('a\n', { separator: ';;' }), /invalid separator ";;"/);
  });

  test('names the path of a missing file', async () => {
    const path = join(folder, 'missing.csv');
    const reading = readDelimitedFile({ path, encoding: 'utf8', separator: ';' }).next();

    await assert.rejects(reading, (error: DelimitedFileError) => {
      assert.ok(error instanceof DelimitedFileError);
      assert.equal(error.path, path);
      assert.match(error.message, /ENOENT/);

      return true;
    });
  });

  test('stops with an AbortError when the signal aborts', async () => {
    const path = await writeTestFile('a\n1\n');
    const controller = new AbortController();

    controller.abort();

    const { signal } = controller;
    const reading = readDelimitedFile({ path, encoding: 'utf8', separator: ';', signal });

    await assert.rejects(reading.next(), { name: 'AbortError' });
  });
});

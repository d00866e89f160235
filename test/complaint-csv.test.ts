import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished, pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { BUNDLED_SCHEMA_PATH } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import {
  ComplaintCsvError,
  createComplaintCsvSource,
  type ComplaintRecord,
} from '../src/sources/complaint-csv.ts';

const logger = createLogger('silent');
const samplesDir = fileURLToPath(new URL('../samples/reclamacoes/', import.meta.url));
const realDataDir = fileURLToPath(new URL('../../shared/data/reclamacoes/', import.meta.url));
const hasRealData = existsSync(realDataDir);
const skipWithoutRealData = hasRealData ? false : `real data not found at ${realDataDir}`;

/** The published header, with the byte 0x96 that separates `clientes` from `CCS`. */
const HEADER =
  'Ano;Trimestre;Categoria;Tipo;CNPJ IF;Instituição financeira;Índice;' +
  'Quantidade de reclamações reguladas procedentes;' +
  'Quantidade de reclamações reguladas - outras;Quantidade de reclamações não reguladas;' +
  'Quantidade total de reclamações;Quantidade total de clientes \u0096 CCS e SCR;' +
  'Quantidade de clientes \u0096 CCS;Quantidade de clientes \u0096 SCR;';

const CONGLOMERATE_ROW =
  '2021;1º;Demais Bancos, Financeiras e Instituições de Pagamento;Conglomerado; ;' +
  'ALFA (conglomerado); ;14;44;15;73;412135;268186;145105;';

const BANK_ROW =
  '2021;1º;Grupo Secundário;Banco/financeira;8357240;BANCO CSF S.A.;1.234,56;165;94;51;310;' +
  '7322283; ;7322283;';

let recordType: RecordType;
let workDir: string;

before(async () => {
  recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
  workDir = await mkdtemp(join(tmpdir(), 'complaint-csv-test-'));
});

after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** Writes text as ISO-8859-1 bytes, like the published files. */
async function writeLatin1(name: string, text: string): Promise<string> {
  const path = join(workDir, name);

  await writeFile(path, Buffer.from(text, 'latin1'));

  return path;
}

async function readAll(path: string): Promise<ComplaintRecord[]> {
  return createComplaintCsvSource(path, { recordType, logger }).toArray();
}

/** Counts the lines of a file minus its header line, 0 for an empty file. */
async function countDataLines(path: string): Promise<number> {
  const bytes = await readFile(path);

  if (bytes.length === 0) {
    return 0;
  }

  const lineCount = bytes.toString('latin1').split('\n').filter((line) => line !== '').length;

  return lineCount - 1;
}

describe('complaint CSV source on the published files', { skip: skipWithoutRealData }, () => {
  test('every file yields one record per data line', async () => {
    const names = (await readdir(realDataDir)).filter((name) => name.endsWith('.csv')).sort();

    assert.ok(names.length > 0);

    for (const name of names) {
      const path = join(realDataDir, name);
      const records = await readAll(path);

      assert.equal(records.length, await countDataLines(path), name);
    }
  });

  test('empty published file yields no records', async () => {
    const records = await readAll(join(realDataDir, '2022_tri_02_nao_ha_dados.csv'));

    assert.deepEqual(records, []);
  });

  test('conglomerate row values as published', async () => {
    const records = await readAll(join(realDataDir, '2021_tri_01.csv'));
    const abc = records.find(
      (record) => record.instituicao_financeira === 'ABC-BRASIL (conglomerado)',
    );

    assert.deepEqual(abc, {
      ano: '2021',
      trimestre: '1º',
      categoria: 'Grupo Secundário',
      tipo: 'Conglomerado',
      cnpj_if: null,
      instituicao_financeira: 'ABC-BRASIL (conglomerado)',
      indice: ' ',
      quantidade_de_reclamacoes_reguladas_procedentes: '2',
      quantidade_de_reclamacoes_reguladas_outras: '3',
      quantidade_de_reclamacoes_nao_reguladas: '4',
      quantidade_total_de_reclamacoes: '9',
      quantidade_total_de_clientes_ccs_e_scr: '26230',
      quantidade_de_clientes_ccs: '24698',
      quantidade_de_clientes_scr: '3810',
    });
  });

  test('published quirks survive as text', async () => {
    const records = await readAll(join(realDataDir, '2021_tri_04.csv'));
    const indices = records.map((record) => record.indice);
    const categories = new Set(records.map((record) => record.categoria));

    assert.ok(records.every((record) => record.trimestre === '4º'));
    assert.ok(categories.has('Demais Bancos, Financeiras e Instituições de Pagamento'));
    assert.ok(indices.some((value) => /^\d{1,3}(\.\d{3})+,\d+$/.test(value ?? '')));
    assert.ok(records.some((record) => record.quantidade_de_clientes_ccs === null));
  });
});

describe('complaint CSV source on the sample files', () => {
  test('sample files yield 26, 27 and 0 records', async () => {
    const counts = [];

    for (const name of ['2023_tri_01.csv', '2023_tri_02.csv', '2023_tri_03_nao_ha_dados.csv']) {
      counts.push((await readAll(join(samplesDir, name))).length);
    }

    assert.deepEqual(counts, [26, 27, 0]);
  });

  test('sample rows keep quirk values as published', async () => {
    const records = await readAll(join(samplesDir, '2023_tri_01.csv'));
    const byName = new Map(records.map((record) => [record.instituicao_financeira, record]));

    assert.equal(byName.get('FINANCEIRA CAJU LTDA.')?.indice, '5.501,06');
    assert.equal(byName.get('FINANCEIRA CAJU LTDA.')?.cnpj_if, '9988776');
    assert.equal(byName.get('TUCANO PAGAMENTOS (conglomerado)')?.indice, ' 0 ');
    assert.equal(byName.get('BANCO CAPIVARA S.A.')?.quantidade_total_de_clientes_ccs_e_scr, ' ');
    assert.equal(byName.get('ARAUCÁRIA (conglomerado)')?.quantidade_de_clientes_ccs, null);
    assert.equal(byName.get('AURORA (conglomerado)')?.trimestre, '1º');
  });
});

describe('complaint CSV source on edge cases', () => {
  test('CRLF file yields the same records as LF', async () => {
    const text = [HEADER, CONGLOMERATE_ROW, BANK_ROW].join('\n') + '\n';
    const lfPath = await writeLatin1('lf.csv', text);
    const crlfPath = await writeLatin1('crlf.csv', text.replaceAll('\n', '\r\n'));

    const crlfRecords = await readAll(crlfPath);

    assert.equal(crlfRecords.length, 2);
    assert.deepEqual(crlfRecords, await readAll(lfPath));
  });

  test('last line without a line break is read', async () => {
    const path = await writeLatin1('no-final-newline.csv', `${HEADER}\n${BANK_ROW}`);

    const records = await readAll(path);

    assert.equal(records.length, 1);
    assert.equal(records[0]?.cnpj_if, '8357240');
  });

  test('header-only file yields no records', async () => {
    const path = await writeLatin1('header-only.csv', `${HEADER}\n`);

    assert.deepEqual(await readAll(path), []);
  });

  test('blank values null only where nullable', async () => {
    const row = '2021;1º;Top 10;Conglomerado;  ;X (conglomerado); ;1;;\t;1;7; ; ;';
    const path = await writeLatin1('blanks.csv', `${HEADER}\n${row}\n`);

    const [record] = await readAll(path);

    assert.equal(record?.cnpj_if, null);
    assert.equal(record?.quantidade_de_reclamacoes_reguladas_outras, null);
    assert.equal(record?.quantidade_de_reclamacoes_nao_reguladas, null);
    assert.equal(record?.quantidade_de_clientes_ccs, null);
    assert.equal(record?.quantidade_de_clientes_scr, null);
    assert.equal(record?.indice, ' ');
  });

  test('short row fails with file and line', async () => {
    const shortRow = BANK_ROW.replace('165;', '');
    const path = await writeLatin1('short-row.csv', [HEADER, BANK_ROW, shortRow].join('\n'));

    await assert.rejects(readAll(path), (error: unknown) => {
      assert.ok(error instanceof ComplaintCsvError);
      assert.equal(error.file, path);
      assert.equal(error.lineNumber, 3);
      assert.match(error.message, /line 3 has 13 fields but the header has 14/);
      assert.ok(error.message.includes(path));

      return true;
    });
  });

  test('header missing a required field fails', async () => {
    const header = HEADER.replace('Índice;', '');
    const row = BANK_ROW.replace('1.234,56;', '');
    const path = await writeLatin1('no-index.csv', `${header}\n${row}\n`);

    await assert.rejects(readAll(path), (error: unknown) => {
      assert.ok(error instanceof ComplaintCsvError);
      assert.equal(error.file, path);
      assert.match(error.message, /no column for required field indice/);
      assert.match(error.message, /header fields seen: ano, trimestre, /);
      assert.ok(error.message.includes(path));

      return true;
    });
  });

  test('header-only file with a wrong header fails', async () => {
    const path = await writeLatin1('header-only-no-index.csv', `${HEADER.replace('Índice;', '')}\n`);

    await assert.rejects(readAll(path), (error: unknown) => {
      assert.ok(error instanceof ComplaintCsvError);
      assert.equal(error.lineNumber, 1);
      assert.match(error.message, /no column for required field indice/);

      return true;
    });
  });

  test('absent nullable and extra columns', async () => {
    const header = `${HEADER.replace('CNPJ IF;', '')}Observação;`;
    const row = `${BANK_ROW.replace('8357240;', '')}revisado;`;
    const path = await writeLatin1('reordered.csv', `${header}\n${row}\n`);

    const [record] = await readAll(path);

    assert.equal(record?.cnpj_if, null);
    assert.equal(record?.instituicao_financeira, 'BANCO CSF S.A.');
    assert.equal(Object.hasOwn(record ?? {}, 'observacao'), false);
  });

  test('missing file fails with the file name', async () => {
    const path = join(workDir, 'absent.csv');

    await assert.rejects(readAll(path), (error: unknown) => {
      assert.ok(error instanceof ComplaintCsvError);
      assert.equal(error.file, path);
      assert.match(error.message, /ENOENT/);

      return true;
    });
  });
});

describe('complaint CSV source stream contract', () => {
  test('works under pipeline and ends once', async () => {
    const path = await writeLatin1('contract.csv', [HEADER, CONGLOMERATE_ROW, BANK_ROW].join('\n'));
    const source = createComplaintCsvSource(path, { recordType, logger });
    const received: unknown[] = [];
    let endCount = 0;

    source.on('end', () => {
      endCount += 1;
    });

    await pipeline(
      source,
      new Writable({
        objectMode: true,
        write(record, _encoding, callback) {
          received.push(record);
          callback();
        },
      }),
    );

    assert.equal(received.length, 2);
    assert.equal(endCount, 1);
  });

  test('destroy before reading emits no error', async () => {
    const path = await writeLatin1('destroy-early.csv', `${HEADER}\n${BANK_ROW}\n`);
    const source = createComplaintCsvSource(path, { recordType, logger });
    let errorCount = 0;

    source.on('error', () => {
      errorCount += 1;
    });
    source.destroy();

    await assert.rejects(finished(source), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    assert.equal(source.destroyed, true);
    assert.equal(errorCount, 0);
  });

  test('destroy after the first record stops reading', async () => {
    const rows = Array.from({ length: 5_000 }, () => BANK_ROW);
    const path = await writeLatin1('destroy-late.csv', [HEADER, ...rows].join('\n'));
    const source = createComplaintCsvSource(path, { recordType, logger });
    const closed = new Promise((resolve) => source.once('close', resolve));

    for await (const record of source) {
      assert.equal((record as ComplaintRecord).cnpj_if, '8357240');
      break;
    }

    await closed;

    assert.equal(source.destroyed, true);
  });

  test('error fires once on a malformed row', async () => {
    const path = await writeLatin1('error-once.csv', `${HEADER}\n1;2;3\n`);
    const source = createComplaintCsvSource(path, { recordType, logger });
    let errorCount = 0;

    source.on('error', () => {
      errorCount += 1;
    });
    source.resume();

    await new Promise((resolve) => source.once('close', resolve));

    assert.equal(errorCount, 1);
  });
});

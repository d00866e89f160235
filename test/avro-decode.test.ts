import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { before, describe, test } from 'node:test';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { BUNDLED_SCHEMA_PATH } from '../src/config.ts';
import type { ReceivedMessage } from '../src/sources/sqs.ts';
import {
  AvroDecodeError,
  createAvroDecodeTransform,
  decodeBody,
  type DeadLetterClass,
  type DecodedMessage,
} from '../src/transforms/avro-decode.ts';
import { bodyOfLength, complaint } from './helpers/records.ts';

/** SQS rejects a message body longer than 256 KiB (262,144 bytes). */
const SQS_MAX_BODY_BYTES = 256 * 1024;

/** Returns the error class decodeBody throws for a body, or 'decoded'. */
function classify(body: string, recordType: RecordType): DeadLetterClass | 'decoded' {
  try {
    decodeBody(body, recordType);

    return 'decoded';
  } catch (error) {
    assert.ok(error instanceof AvroDecodeError, `unexpected error ${String(error)}`);

    return error.errorClass;
  }
}

/** Replaces the bytes of `instituicao_financeira` in an encoded record. */
function withNameBytes(recordType: RecordType, nameBytes: Buffer): string {
  const marker = 'NAME-MARKER';
  const encoded = recordType.toBuffer(complaint(0, { instituicao_financeira: marker }));
  const start = encoded.indexOf(marker);

  assert.equal(nameBytes.length, marker.length, 'the replacement keeps the length prefix valid');

  return Buffer.concat([
    encoded.subarray(0, start),
    nameBytes,
    encoded.subarray(start + marker.length),
  ]).toString('base64');
}

describe('decodeBody', () => {
  let recordType: RecordType;
  let valid: Buffer;

  before(async () => {
    recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
    valid = recordType.toBuffer(complaint());
  });

  test('decodes a valid record', () => {
    const record = decodeBody(valid.toString('base64'), recordType);

    assert.deepEqual({ ...record }, complaint());
  });

  test('rejects an empty body', () => {
    assert.equal(classify('', recordType), 'empty_body');
  });

  test('rejects text that is not strict base64', () => {
    const encoded = valid.toString('base64');
    const cases = [
      'not base64 at all!',
      encoded.replace(/=+$/, ''),
      `${encoded}\n`,
      ` ${encoded}`,
      `${encoded.slice(0, 8)} ${encoded.slice(8)}`,
      valid.toString('base64url'),
      `${encoded}====`,
      '=',
      'QQ=',
    ];

    for (const body of cases) {
      assert.equal(classify(body, recordType), 'invalid_base64', JSON.stringify(body));
    }
  });

  test('rejects base64 of bytes that are not a record', () => {
    const highBytes = Buffer.from([0xff, 0xff, 0xff]).toString('base64');
    const text = Buffer.from('hello world!').toString('base64');

    assert.equal(classify(highBytes, recordType), 'avro_truncated');
    assert.equal(classify(text, recordType), 'avro_truncated');
  });

  test('rejects a string length far beyond the body', () => {
    const hugeLength = Buffer.from([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    const negativeLength = Buffer.from([0x01, 0x41]);

    assert.equal(classify(hugeLength.toString('base64'), recordType), 'avro_truncated');
    assert.equal(classify(negativeLength.toString('base64'), recordType), 'avro_truncated');
  });

  test('rejects a truncated record', () => {
    for (const length of [1, 10, valid.length - 1]) {
      const body = valid.subarray(0, length).toString('base64');

      assert.equal(classify(body, recordType), 'avro_truncated', `first ${length} bytes`);
    }
  });

  test('rejects bytes after the record', () => {
    const body = Buffer.concat([valid, Buffer.from([0])]).toString('base64');

    assert.equal(classify(body, recordType), 'avro_trailing_bytes');
  });

  test('rejects a union branch the schema lacks', () => {
    const unionStart = valid.indexOf(Buffer.from('10000')) - 2;
    const corrupted = Buffer.from(valid);

    // Union indexes are zigzag varints: 0x02 is branch 1 (string), 0x06 is branch 3.
    assert.equal(corrupted[unionStart], 0x02);
    corrupted[unionStart] = 0x06;

    assert.equal(classify(corrupted.toString('base64'), recordType), 'schema_mismatch');
  });

  test('rejects NUL in a required and in a nullable string', () => {
    const required = recordType.toBuffer(complaint(0, { tipo: 'nul\u0000inside' }));
    const nullable = recordType.toBuffer(complaint(0, { cnpj_if: '\u0000' }));

    assert.equal(classify(required.toString('base64'), recordType), 'unsupported_text');
    assert.equal(classify(nullable.toString('base64'), recordType), 'unsupported_text');
  });

  test('rejects invalid UTF-8 inside a string', () => {
    const cases = {
      'lone continuation byte': Buffer.from('NAME\x80MARKER', 'latin1'),
      'truncated sequence': Buffer.from('NAME-MARKE\xc3', 'latin1'),
      'overlong NUL': Buffer.from('NAME-MARK\xc0\x80', 'latin1'),
      'UTF-16 surrogate': Buffer.from('NAME-MA\xed\xa0\x80R', 'latin1'),
      'byte 0xFF': Buffer.from('NAME-MARKE\xff', 'latin1'),
    };

    for (const [name, bytes] of Object.entries(cases)) {
      assert.equal(classify(withNameBytes(recordType, bytes), recordType), 'unsupported_text', name);
    }
  });

  test('accepts multi-byte UTF-8 and control characters', () => {
    const text = 'ç ã º – 😀 tab\t nl\n cr\r bs\\';
    const body = recordType.toBuffer(complaint(0, { instituicao_financeira: text })).toString('base64');

    assert.equal(decodeBody(body, recordType).instituicao_financeira, text);
  });

  test('decodes a body of the SQS maximum size', () => {
    const body = bodyOfLength(recordType, SQS_MAX_BODY_BYTES);

    const record = decodeBody(body, recordType);

    assert.equal(body.length, SQS_MAX_BODY_BYTES);
    assert.ok((record.instituicao_financeira as string).length > 190_000);
  });
});

describe('avro decode transform', () => {
  let recordType: RecordType;

  before(async () => {
    recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
  });

  function message(body: string, index: number): ReceivedMessage {
    return {
      messageId: `message-${index}`,
      receiptHandle: `handle-${index}`,
      body,
      md5OfBody: '',
      receiveCount: 1,
      sentAtMs: null,
    };
  }

  async function decodeAll(bodies: string[]): Promise<DecodedMessage[]> {
    const output: DecodedMessage[] = [];

    await pipeline(
      Readable.from(bodies.map(message)),
      createAvroDecodeTransform(recordType),
      new Writable({
        objectMode: true,
        write(item: DecodedMessage, _encoding, callback) {
          output.push(item);
          callback();
        },
      }),
    );

    return output;
  }

  test('passes bad bodies on as dead letters in order', async () => {
    const good = recordType.toBuffer(complaint()).toString('base64');

    const output = await decodeAll([good, 'bad!', '', good]);

    assert.deepEqual(
      output.map((item) => item.message.messageId),
      ['message-0', 'message-1', 'message-2', 'message-3'],
    );
    assert.equal(output[0]?.record?.ano, '2021');
    assert.equal(output[1]?.deadLetter?.errorClass, 'invalid_base64');
    assert.equal(output[2]?.deadLetter?.errorClass, 'empty_body');
    assert.equal(output[3]?.deadLetter, undefined);
  });

  test('emits finish and end once under pipeline()', async () => {
    const transform = createAvroDecodeTransform(recordType);
    const counts = { finish: 0, end: 0, error: 0 };

    for (const name of ['finish', 'end', 'error'] as const) {
      transform.on(name, () => {
        counts[name] += 1;
      });
    }

    await pipeline(Readable.from([message('bad!', 0)]), transform, async (source) => {
      for await (const item of source) {
        assert.ok(item);
      }
    });

    assert.deepEqual(counts, { finish: 1, end: 1, error: 0 });
  });

  test('destroy before the first write closes once', async () => {
    const transform = createAvroDecodeTransform(recordType);
    let closeCount = 0;

    transform.on('close', () => {
      closeCount += 1;
    });
    transform.destroy();
    await new Promise((resolve) => setImmediate(resolve));

    assert.equal(closeCount, 1);
  });
});

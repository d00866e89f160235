import { Transform, type TransformCallback } from 'node:stream';
import type { RecordType } from '../avro.ts';
import type { ReceivedMessage } from '../sources/sqs.ts';

/** Class of the problem that kept a message from becoming a row (`dead_letters.error_class`). */
export type DeadLetterClass =
  | 'empty_body'
  | 'invalid_base64'
  | 'avro_truncated'
  | 'avro_trailing_bytes'
  | 'schema_mismatch'
  | 'unsupported_text'
  | 'rejected_by_database';

export type DeadLetterReason = { errorClass: DeadLetterClass; errorMessage: string };

/** A message with its decoded record, or with the reason it has none. */
export type DecodedMessage =
  | { message: ReceivedMessage; record: Record<string, unknown>; deadLetter?: undefined }
  | { message: ReceivedMessage; record?: undefined; deadLetter: DeadLetterReason };

/** A body that failed to decode, with its dead-letter class. */
export class AvroDecodeError extends Error {
  override name = 'AvroDecodeError';

  constructor(
    readonly errorClass: DeadLetterClass,
    message: string,
    options?: { cause: unknown },
  ) {
    super(message, options);
  }
}

/** Standard base64 alphabet with correct padding; Node's own decoder skips bad characters. */
const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes one body: the base64 text of a schemaless Avro binary record. Throws AvroDecodeError
 * with the class of the problem; succeeds only when the bytes are exactly one record.
 */
export function decodeBody(body: string, recordType: RecordType): Record<string, unknown> {
  if (body.length === 0) {
    throw new AvroDecodeError('empty_body', 'the message body is empty');
  }

  if (!STRICT_BASE64.test(body)) {
    throw new AvroDecodeError('invalid_base64', 'the message body is not valid base64 text');
  }

  const bytes = Buffer.from(body, 'base64');
  let decoded: { value: unknown; offset: number };

  try {
    decoded = recordType.decode(bytes, 0);
  } catch (error) {
    throw new AvroDecodeError(
      'schema_mismatch',
      `the bytes are not a record of the schema: ${(error as Error).message}`,
      { cause: error },
    );
  }

  if (decoded.offset < 0) {
    throw new AvroDecodeError('avro_truncated', `the record ends early after ${bytes.length} bytes`);
  }

  if (decoded.offset < bytes.length) {
    throw new AvroDecodeError(
      'avro_trailing_bytes',
      `${bytes.length - decoded.offset} bytes follow the record at offset ${decoded.offset}`,
    );
  }

  const record = decoded.value as Record<string, unknown>;

  checkText(record, bytes, recordType);

  return record;
}

/**
 * Rejects text that PostgreSQL cannot store: the NUL character (neither text nor jsonb takes
 * it) and bytes that are not UTF-8, which the decoder would otherwise turn into U+FFFD.
 */
function checkText(record: Record<string, unknown>, bytes: Buffer, recordType: RecordType): void {
  let hasReplacementCharacter = false;

  for (const [field, value] of Object.entries(record)) {
    if (typeof value !== 'string') {
      continue;
    }

    if (value.includes('\u0000')) {
      throw new AvroDecodeError('unsupported_text', `field ${field} contains the NUL character`);
    }

    hasReplacementCharacter ||= value.includes('\uFFFD');
  }

  // Invalid UTF-8 decodes to U+FFFD, so only a record that contains one can hide it. Then
  // re-encoding gives back the same bytes only if every U+FFFD was really in the input.
  if (hasReplacementCharacter && !recordType.toBuffer(record).equals(bytes)) {
    throw new AvroDecodeError(
      'unsupported_text',
      'the record does not re-encode to the same bytes: a string field is not valid UTF-8',
    );
  }
}

/**
 * Transform stage: ReceivedMessage in, DecodedMessage out. A body that does not decode becomes
 * a dead letter; only an unexpected error, not bad input, fails the stream.
 */
export function createAvroDecodeTransform(recordType: RecordType): Transform {
  return new Transform({
    objectMode: true,
    transform(message: ReceivedMessage, _encoding, callback: TransformCallback) {
      try {
        const record = decodeBody(message.body, recordType);

        callback(null, { message, record } satisfies DecodedMessage);
      } catch (error) {
        if (!(error instanceof AvroDecodeError)) {
          callback(error as Error);

          return;
        }

        const deadLetter = { errorClass: error.errorClass, errorMessage: error.message };

        callback(null, { message, deadLetter } satisfies DecodedMessage);
      }
    },
  });
}

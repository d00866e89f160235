import { Transform, type TransformCallback } from 'node:stream';
import type { RecordType } from '../avro.ts';
import type { SqsBatchEntry } from '../sinks/sqs-send.ts';

/** Options of {@link createAvroEncodeTransform}. */
export type AvroEncodeOptions = {
  /** Record type of the message schema, which every record is validated against. */
  recordType: RecordType;
};

/** A record that does not match the message schema. */
export class AvroEncodeError extends Error {
  override name = 'AvroEncodeError';

  constructor(
    readonly entryId: string,
    readonly invalidFields: string[],
    reason: string,
    options?: { cause: unknown },
  ) {
    super(`encoding record ${entryId} failed: ${reason}`, options);
  }
}

/** Maximum characters of a value quoted in an error message. */
const VALUE_PREVIEW_CHARACTERS = 80;

/**
 * Creates an object-mode Transform that turns each record into an SQS batch entry. The
 * entry's `Id` is the record's position in the stream, counted from 1, so a failure points
 * back to the data row. `MessageBody` is the base64 text of the record's schemaless Avro
 * binary encoding: no container header and no schema fingerprint, as consumers of the queue
 * expect. A record that does not match the schema fails the stream with
 * {@link AvroEncodeError} naming every invalid field.
 */
export function createAvroEncodeTransform(options: AvroEncodeOptions): Transform {
  const { recordType } = options;
  let recordCount = 0;

  return new Transform({
    objectMode: true,
    transform(record: unknown, _encoding: BufferEncoding, callback: TransformCallback) {
      recordCount += 1;

      const entryId = String(recordCount);

      try {
        callback(null, encodeEntry(recordType, entryId, record));
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}

function encodeEntry(recordType: RecordType, entryId: string, record: unknown): SqsBatchEntry {
  const problems: string[] = [];
  const invalidFields: string[] = [];

  const isValid = recordType.isValid(record, {
    errorHook(path, value, type) {
      const field = path.length === 0 ? '(record)' : path.join('.');

      invalidFields.push(field);
      problems.push(
        `field ${field} has ${describeValue(value)}, expected ${JSON.stringify(type.schema())}`,
      );
    },
  });

  if (!isValid) {
    throw new AvroEncodeError(entryId, invalidFields, problems.join('; '));
  }

  try {
    return { Id: entryId, MessageBody: recordType.toBuffer(record).toString('base64') };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);

    throw new AvroEncodeError(entryId, [], reason, { cause: error });
  }
}

function describeValue(value: unknown): string {
  if (value === undefined) {
    return 'no value';
  }

  const text = JSON.stringify(value) ?? String(value);
  const preview =
    text.length > VALUE_PREVIEW_CHARACTERS ? `${text.slice(0, VALUE_PREVIEW_CHARACTERS)}...` : text;

  return `value ${preview} (${value === null ? 'null' : typeof value})`;
}

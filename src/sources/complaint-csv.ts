import { Readable } from 'node:stream';
import { fieldNames, nullableFieldNames, type RecordType } from '../avro.ts';
import type { Logger } from '../logger.ts';
import { DelimitedFileError, readDelimitedFile } from './delimited-file.ts';

/** One CSV row keyed by schema field name, with null where a nullable field is blank. */
export type ComplaintRecord = Record<string, string | null>;

/** Options of {@link createComplaintCsvSource}. */
export type ComplaintCsvSourceOptions = {
  /** Record type of the message schema, which defines the fields and their nullability. */
  recordType: RecordType;
  /** Parent logger. The stage logs through a child bound to `{ stage: 'complaint-csv' }`. */
  logger: Logger;
};

/** A complaint CSV file that cannot be read or does not match the message schema. */
export class ComplaintCsvError extends Error {
  override name = 'ComplaintCsvError';

  constructor(
    message: string,
    readonly file: string,
    readonly lineNumber: number | undefined,
    options?: { cause: unknown },
  ) {
    super(message, options);
  }
}

/** The central bank publishes the rankings in ISO-8859-1, with `;` between fields. */
const FILE_ENCODING = 'latin1';
const FIELD_SEPARATOR = ';';

/** Schema fields in schema order with their nullability, checked once against the header. */
type FieldPlan = Array<{ name: string; isNullable: boolean }>;

/**
 * Creates an object-mode Readable that streams one complaint CSV file and emits one
 * {@link ComplaintRecord} per data row. Header names become field names by the project's
 * field-name derivation, and columns the schema does not know are ignored. A nullable field
 * whose column is missing, empty or only white space becomes null. Other fields keep the text
 * as published, spaces included. An empty file emits no records. The stream fails with
 * {@link ComplaintCsvError} when the file cannot be read, when a row has a different number
 * of fields than the header, or when the header lacks a non-nullable schema field, which is
 * checked before any record goes out, also in a file with no data rows.
 */
export function createComplaintCsvSource(
  file: string,
  options: ComplaintCsvSourceOptions,
): Readable {
  const logger = options.logger.child({ stage: 'complaint-csv' });

  return Readable.from(readRecords(file, options.recordType, logger), { objectMode: true });
}

async function* readRecords(
  file: string,
  recordType: RecordType,
  logger: Logger,
): AsyncGenerator<ComplaintRecord> {
  let plan: FieldPlan = [];
  const rows = readDelimitedFile({
    path: file,
    encoding: FILE_ENCODING,
    separator: FIELD_SEPARATOR,
    onHeader: (headerNames, lineNumber) => {
      plan = planFields(file, lineNumber, headerNames, recordType);
    },
  });
  let rowCount = 0;

  logger.debug({ file }, 'reading started');

  try {
    for await (const { values } of rows) {
      rowCount += 1;

      yield toRecord(values, plan);
    }
  } catch (error) {
    throw toComplaintCsvError(error);
  }

  logger.debug({ file, rowCount }, 'reading finished');
}

function planFields(
  file: string,
  lineNumber: number,
  headerNames: string[],
  recordType: RecordType,
): FieldPlan {
  const nullableNames = nullableFieldNames(recordType);
  const plan = fieldNames(recordType).map((name) => ({
    name,
    isNullable: nullableNames.has(name),
  }));
  const missingNames = plan
    .filter((field) => !field.isNullable && !headerNames.includes(field.name))
    .map((field) => field.name);

  if (missingNames.length > 0) {
    throw new ComplaintCsvError(
      `reading ${file} failed: the header has no column for required field ` +
        `${missingNames.join(', ')}; header fields seen: ${headerNames.join(', ')}; ` +
        'check that the file is a complaint ranking',
      file,
      lineNumber,
    );
  }

  return plan;
}

function toRecord(values: Record<string, string>, plan: FieldPlan): ComplaintRecord {
  const record: ComplaintRecord = {};

  for (const { name, isNullable } of plan) {
    // Only nullable fields can lack a column: planFields rejects a header without the others.
    const value = values[name] ?? '';

    record[name] = isNullable && value.trim() === '' ? null : value;
  }

  return record;
}

function toComplaintCsvError(error: unknown): unknown {
  if (error instanceof DelimitedFileError) {
    return new ComplaintCsvError(error.message, error.path, error.lineNumber, { cause: error });
  }

  return error;
}

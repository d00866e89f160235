import { Transform, type TransformCallback } from 'node:stream';
import { escapeCopyText } from '../postgres.ts';
import type { ReferenceTable } from '../reference-tables.ts';
import type { DelimitedRecord } from '../sources/delimited-file.ts';

/**
 * Transform stage: DelimitedRecord in, one line of COPY text format out, for the staging table
 * of `reference`: the file path, the line number, then every column of the table in order. A
 * column the file lacks is null.
 */
export function createReferenceCopyRowsTransform(
  reference: ReferenceTable,
  path: string,
): Transform {
  const columnNames = reference.columns.map(([name]) => name);
  const pathField = escapeCopyText(path);

  return new Transform({
    writableObjectMode: true,
    transform({ lineNumber, values }: DelimitedRecord, _encoding, callback: TransformCallback) {
      const fields = columnNames.map((name) => toCopyField(values[name]));

      callback(null, `${pathField}\t${lineNumber}\t${fields.join('\t')}\n`);
    },
  });
}

/** Escapes a value for COPY text format. Undefined, for a column the file lacks, is null. */
function toCopyField(value: string | undefined): string {
  if (value === undefined) {
    return '\\N';
  }

  return escapeCopyText(value);
}

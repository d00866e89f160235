import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from '../logger.ts';
import { escapeCopyText } from '../postgres.ts';
import {
  readDelimitedFile,
  type DelimitedFileOptions,
  type DelimitedRecord,
} from '../sources/delimited-file.ts';

/** Files that replace the reference tables. */
export type LoadReferenceOptions = {
  /** The central bank's institution list: UTF-8, tab-separated, header `Segmento CNPJ Nome`. */
  bancosPath: string;
  /** The Glassdoor employer files, UTF-8 and `|`-separated, which together form one table. */
  empregadosPaths: string[];
};

/** Rows stored in trusted.bancos and trusted.empregados. */
export type ReferenceCounts = { bancoCount: number; empregadoCount: number };

/** A reference file that cannot be loaded. The tables keep their previous rows. */
export class LoadReferenceError extends Error {
  override name = 'LoadReferenceError';

  /** The file at fault, when one is. */
  readonly path: string | undefined;

  /** Line of the file at fault, when one is. */
  readonly lineNumber: number | undefined;

  constructor(message: string, path?: string, lineNumber?: number, options?: ErrorOptions) {
    super(`loading reference data failed: ${message}`, options);
    this.path = path;
    this.lineNumber = lineNumber;
  }
}

/** Conversion of a column from the text of the file to its type in the table. */
type ColumnKind = {
  /** SQL function that converts the text; blank text becomes null. */
  convert: string;
  /** A valid value, for error messages; set where convert returns null for invalid text. */
  expected?: string;
};

const TEXT: ColumnKind = { convert: 'trusted.clean_text' };
const NAME: ColumnKind = { convert: 'trusted.normalize_name' };
const CNPJ: ColumnKind = {
  convert: 'trusted.format_cnpj',
  expected: 'a CNPJ root of up to 8 digits, such as 60746948',
};
const COUNT: ColumnKind = {
  convert: 'trusted.parse_integer',
  expected: 'an integer, such as 1300',
};
const RATING: ColumnKind = {
  convert: 'trusted.parse_decimal',
  expected: 'a decimal number with "." as the decimal mark, such as 3.8',
};
const YEAR: ColumnKind = {
  convert: 'trusted.parse_float_as_integer',
  expected: 'a whole number, such as 1990 or 1990.0',
};

/** A reference table and the files that fill it. */
type ReferenceTable = {
  table: string;
  /** Temporary table that receives the raw text of the files by COPY. */
  stagingTable: string;
  /** Every column of the table, in table order, by field name as derived from the header. */
  columns: ReadonlyArray<readonly [string, ColumnKind]>;
  /** Columns that every file must have; the others are null where a file lacks them. */
  requiredColumns: readonly string[];
  format: Pick<DelimitedFileOptions, 'encoding' | 'separator'>;
};

const BANCOS: ReferenceTable = {
  table: 'trusted.bancos',
  stagingTable: 'bancos_file',
  columns: [
    ['segmento', TEXT],
    ['cnpj', CNPJ],
    ['nome', NAME],
  ],
  requiredColumns: ['segmento', 'cnpj', 'nome'],
  format: { encoding: 'utf8', separator: '\t' },
};

// One employer file has `segmento` and no `cnpj`, the other the reverse. A column missing from
// a file is null for its rows, so only employer_name is required.
const EMPREGADOS: ReferenceTable = {
  table: 'trusted.empregados',
  stagingTable: 'empregados_file',
  columns: [
    ['employer_name', TEXT],
    ['reviews_count', COUNT],
    ['culture_count', COUNT],
    ['salaries_count', COUNT],
    ['benefits_count', COUNT],
    ['employerwebsite', TEXT],
    ['employerheadquarters', TEXT],
    ['employerfounded', YEAR],
    ['employerindustry', TEXT],
    ['employerrevenue', TEXT],
    ['url', TEXT],
    ['geral', RATING],
    ['cultura_e_valores', RATING],
    ['diversidade_e_inclusao', RATING],
    ['qualidade_de_vida', RATING],
    ['alta_lideranca', RATING],
    ['remuneracao_e_beneficios', RATING],
    ['oportunidades_de_carreira', RATING],
    ['recomendam_para_outras_pessoas', RATING],
    ['perspectiva_positiva_da_empresa', RATING],
    ['segmento', TEXT],
    ['cnpj', CNPJ],
    ['nome', NAME],
    ['match_percent', RATING],
  ],
  requiredColumns: ['employer_name'],
  format: { encoding: 'utf8', separator: '|' },
};

/**
 * Replaces trusted.bancos and trusted.empregados with the contents of the reference files, in
 * one transaction, so that on any error, invalid value or empty file both tables keep their
 * previous rows. Names are normalized with trusted.normalize_name and CNPJs padded with
 * trusted.format_cnpj, so that the delivery query can join them. Concurrent loads wait for
 * each other, and readers see the old rows until the load commits.
 */
export async function loadReference(
  pool: pg.Pool,
  options: LoadReferenceOptions,
  logger: Logger,
): Promise<ReferenceCounts> {
  const log = logger.child({ stage: 'load-reference' });
  const startedAt = performance.now();
  const client = await pool.connect();
  let releaseError: Error | undefined;

  try {
    await client.query('BEGIN');

    const counts = await replaceTables(client, options, log);

    await client.query('COMMIT');

    const durationMs = Math.round(performance.now() - startedAt);

    log.info({ ...counts, durationMs }, 'reference data loaded');

    return counts;
  } catch (error) {
    releaseError = await rollBack(client, log);

    throw error;
  } finally {
    client.release(releaseError);
  }
}

async function replaceTables(
  client: pg.PoolClient,
  options: LoadReferenceOptions,
  log: Logger,
): Promise<ReferenceCounts> {
  await createStagingTable(client, BANCOS);
  await copyFile(client, BANCOS, options.bancosPath, log);

  await createStagingTable(client, EMPREGADOS);

  for (const path of options.empregadosPaths) {
    await copyFile(client, EMPREGADOS, path, log);
  }

  await rejectInvalidValues(client, BANCOS);
  await rejectInvalidValues(client, EMPREGADOS);

  // EXCLUSIVE conflicts with itself and with writers but not with SELECT, so a second load
  // waits here, and then deletes the rows this one inserted instead of adding to them.
  await client.query('LOCK TABLE trusted.bancos, trusted.empregados IN EXCLUSIVE MODE');

  return {
    bancoCount: await replaceRows(client, BANCOS),
    empregadoCount: await replaceRows(client, EMPREGADOS),
  };
}

/**
 * Rolls back the transaction. Returns the error of a failed rollback, to release the
 * connection with, so that the pool discards it.
 */
async function rollBack(client: pg.PoolClient, log: Logger): Promise<Error | undefined> {
  try {
    await client.query('ROLLBACK');

    return undefined;
  } catch (error) {
    // Closing the connection makes the server roll back too.
    log.warn({ err: error }, 'rollback failed; closing the connection');

    return error as Error;
  }
}

/** Creates a temporary table of text columns, plus the file and line of each row. */
async function createStagingTable(client: pg.PoolClient, reference: ReferenceTable): Promise<void> {
  const columns = reference.columns.map(([name]) => `${name} text`).join(', ');

  await client.query(
    `CREATE TEMPORARY TABLE ${reference.stagingTable} ` +
      `(source_path text NOT NULL, line_number integer NOT NULL, ${columns}) ON COMMIT DROP`,
  );
}

/** Streams one file into the staging table with COPY, as raw text. */
async function copyFile(
  client: pg.PoolClient,
  reference: ReferenceTable,
  path: string,
  log: Logger,
): Promise<void> {
  const columnNames = reference.columns.map(([name]) => name);
  const copyStream = client.query(
    copyFrom(
      `COPY ${reference.stagingTable} (source_path, line_number, ${columnNames.join(', ')}) ` +
        'FROM STDIN',
    ),
  );
  const records = readDelimitedFile({ path, ...reference.format });

  try {
    await pipeline(Readable.from(toCopyRows(records, reference, path)), copyStream);
  } catch (error) {
    if (error instanceof LoadReferenceError) {
      throw error;
    }

    throw new LoadReferenceError((error as Error).message, path, undefined, { cause: error });
  }

  if (copyStream.rowCount === 0) {
    throw new LoadReferenceError(
      `${path} has no data rows; a load replaces the whole ${reference.table} table, so ` +
        'check the path or restore the file',
      path,
    );
  }

  log.debug({ path, table: reference.table, rowCount: copyStream.rowCount }, 'file copied');
}

/** Turns records into lines of COPY text format, checking the header on the first one. */
async function* toCopyRows(
  records: AsyncIterable<DelimitedRecord>,
  reference: ReferenceTable,
  path: string,
): AsyncGenerator<string> {
  let isHeaderChecked = false;

  for await (const { lineNumber, values } of records) {
    if (!isHeaderChecked) {
      checkColumns(Object.keys(values), reference, path);
      isHeaderChecked = true;
    }

    const fields = [path, String(lineNumber), ...reference.columns.map(([name]) => values[name])];

    yield `${fields.map(toCopyField).join('\t')}\n`;
  }
}

function checkColumns(fieldNames: string[], reference: ReferenceTable, path: string): void {
  const known = reference.columns.map(([name]) => name);
  const unknown = fieldNames.filter((name) => !known.includes(name));
  const missing = reference.requiredColumns.filter((name) => !fieldNames.includes(name));

  if (unknown.length > 0 || missing.length > 0) {
    const problems = [
      unknown.length > 0 ? `unknown columns ${unknown.join(', ')}` : '',
      missing.length > 0 ? `missing columns ${missing.join(', ')}` : '',
    ].filter((problem) => problem !== '');

    throw new LoadReferenceError(
      `the header of ${path} has ${problems.join(' and ')}; a file for ${reference.table} ` +
        `may have the columns ${known.join(', ')}`,
      path,
    );
  }
}

/** Escapes a value for COPY text format. Undefined, for a column the file lacks, is null. */
function toCopyField(value: string | undefined): string {
  if (value === undefined) {
    return '\\N';
  }

  return escapeCopyText(value);
}

/**
 * Throws a LoadReferenceError naming the first non-blank value that its conversion function
 * rejects (it returns null), with the number of such values in all files.
 */
async function rejectInvalidValues(
  client: pg.PoolClient,
  reference: ReferenceTable,
): Promise<void> {
  const checks = reference.columns
    .filter(([, kind]) => kind.expected !== undefined)
    .map(
      ([name, kind]) =>
        `SELECT source_path, line_number, '${name}' AS column_name, ${name} AS value ` +
        `FROM ${reference.stagingTable} ` +
        `WHERE trusted.clean_text(${name}) IS NOT NULL AND ${kind.convert}(${name}) IS NULL`,
    );
  const result = await client.query<InvalidValue>(
    `SELECT *, count(*) OVER () AS invalid_count FROM (${checks.join(' UNION ALL ')}) AS invalid ` +
      'ORDER BY source_path COLLATE "C", line_number LIMIT 1',
  );
  const invalid = result.rows[0];

  if (invalid === undefined) {
    return;
  }

  const kind = reference.columns.find(([name]) => name === invalid.column_name)?.[1];
  const others = Number(invalid.invalid_count) - 1;

  throw new LoadReferenceError(
    `invalid ${invalid.column_name} ${JSON.stringify(invalid.value)} in ${invalid.source_path} ` +
      `line ${invalid.line_number}` +
      (others > 0 ? ` (and ${others} more invalid values)` : '') +
      `: expected ${kind?.expected}; fix the value or leave it empty, then load again`,
    invalid.source_path,
    invalid.line_number,
  );
}

type InvalidValue = {
  source_path: string;
  line_number: number;
  column_name: string;
  value: string;
  invalid_count: string;
};

/** Deletes the rows of the table and inserts the staged rows, converted. Returns their count. */
async function replaceRows(client: pg.PoolClient, reference: ReferenceTable): Promise<number> {
  const names = reference.columns.map(([name]) => name);
  const conversions = reference.columns.map(([name, kind]) => `${kind.convert}(${name})`);

  await client.query(`DELETE FROM ${reference.table}`);

  const result = await client.query(
    `INSERT INTO ${reference.table} (${names.join(', ')}) ` +
      `SELECT ${conversions.join(', ')} FROM ${reference.stagingTable}`,
  );

  return result.rowCount ?? 0;
}

import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  DuckDBAppender,
  DuckDBConnection,
  DuckDBInstance,
} from '@duckdb/node-api';
import type { Logger } from '../logger.ts';
import type { QueryColumn } from '../sources/postgres-query.ts';

/** DuckDB column types that the Parquet writer maps to the report's Parquet types. */
type DuckDbType = 'BOOLEAN' | 'SMALLINT' | 'INTEGER' | 'BIGINT' | 'FLOAT' | 'DOUBLE' | 'VARCHAR';

export type ParquetColumn = { name: string; type: DuckDbType };

/** PostgreSQL type OIDs (from pg_type) that the export accepts, with their DuckDB type. */
const DUCKDB_TYPE_BY_OID = new Map<number, DuckDbType>([
  [16, 'BOOLEAN'],
  [21, 'SMALLINT'],
  [23, 'INTEGER'],
  [20, 'BIGINT'],
  [700, 'FLOAT'],
  [701, 'DOUBLE'],
  [1700, 'DOUBLE'],
  [25, 'VARCHAR'],
  [1043, 'VARCHAR'],
  [1042, 'VARCHAR'],
  [19, 'VARCHAR'],
]);

/** Writing the Parquet file failed; the temporary files are removed by the caller. */
export class ParquetWriteError extends Error {
  override name = 'ParquetWriteError';

  constructor(
    readonly path: string,
    options: { cause: unknown },
  ) {
    const reason = options.cause instanceof Error ? options.cause.message : String(options.cause);

    super(`writing Parquet file ${path} failed: ${reason}`, options);
  }
}

/**
 * Maps query columns to DuckDB columns. Throws on a type the report cannot carry, naming the
 * column, so the query can cast it.
 */
export function toParquetColumns(columns: QueryColumn[]): ParquetColumn[] {
  return columns.map(({ name, dataTypeId }) => {
    const type = DUCKDB_TYPE_BY_OID.get(dataTypeId);

    if (type === undefined) {
      throw new Error(
        `column ${name} has PostgreSQL type OID ${dataTypeId}, which the export does not map; ` +
          'cast it in the query to integer, bigint, double precision, boolean or text',
      );
    }

    return { name, type };
  });
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/**
 * Rows appended between two flushes into the table. Until it flushes, DuckDB's appender keeps
 * rows in memory that memory_limit does not cover: with @duckdb/node-api 1.5.6, RSS grew by
 * 230 MB over 300,000 rows of 36 columns while duckdb_memory() reported under 16 MB. Each
 * flush commits a transaction, which made an export of 1,000,000 rows about 13% slower.
 */
const APPENDER_FLUSH_ROWS = 16_384;

type Appendable = (appender: DuckDBAppender, value: unknown) => void;

/** node-postgres returns int8 and numeric as strings, the other accepted types as numbers. */
const APPEND_BY_TYPE: Record<DuckDbType, Appendable> = {
  BOOLEAN: (appender, value) => appender.appendBoolean(value as boolean),
  SMALLINT: (appender, value) => appender.appendSmallInt(value as number),
  INTEGER: (appender, value) => appender.appendInteger(value as number),
  BIGINT: (appender, value) => appender.appendBigInt(BigInt(value as string | number)),
  FLOAT: (appender, value) => appender.appendFloat(value as number),
  DOUBLE: (appender, value) => appender.appendDouble(Number(value)),
  VARCHAR: (appender, value) => appender.appendVarchar(value as string),
};

export type DuckDbParquetOptions = {
  columns: ParquetColumn[];
  /** Folder for DuckDB's database, its spill files and the Parquet file; the caller removes it. */
  workDir: string;
  rowGroupRows: number;
  /** DuckDB memory_limit, such as 256MB; beyond it DuckDB spills to `workDir`. */
  memoryLimit: string;
  logger: Logger;
};

/**
 * Sink stage that appends row arrays to a DuckDB table and, when the input ends, writes the
 * table to a zstd-compressed Parquet file in `workDir` (`parquetPath`). DuckDB keeps the rows
 * in a database file under a memory limit, so a large report spills to disk instead of memory.
 */
export class DuckDbParquetSink extends Writable {
  readonly parquetPath: string;
  rowCount = 0;
  /** Time spent writing the Parquet file once the input ended. */
  parquetDurationMs = 0;

  readonly #options: DuckDbParquetOptions;
  readonly #appenders: Appendable[];
  #instance: DuckDBInstance | undefined;
  #connection: DuckDBConnection | undefined;
  #appender: DuckDBAppender | undefined;

  constructor(options: DuckDbParquetOptions) {
    super({ objectMode: true, highWaterMark: 1024 });
    this.#options = options;
    this.#appenders = options.columns.map((column) => APPEND_BY_TYPE[column.type]);
    this.parquetPath = join(options.workDir, 'delivery.parquet');
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#open().then(
      () => callback(),
      (error: unknown) => callback(new ParquetWriteError(this.parquetPath, { cause: error })),
    );
  }

  async #open(): Promise<void> {
    const { workDir, memoryLimit, columns } = this.#options;

    // One thread, because the Parquet writer buffers a row group per thread: with two threads
    // and 122,880-row groups, a 128 MB limit ran out of memory on 1,000,000 report rows.
    // Writing the file takes about a second of a 40-second export of that size
    // (BENCHMARKS.md), so a second thread gains little.
    this.#instance = await DuckDBInstance.create(join(workDir, 'export.duckdb'), {
      memory_limit: memoryLimit,
      temp_directory: join(workDir, 'spill'),
      threads: '1',
    });
    this.#connection = await this.#instance.connect();

    const columnList = columns
      .map((column) => `${quoteIdentifier(column.name)} ${column.type}`)
      .join(', ');

    await this.#connection.run(`CREATE TABLE delivery (${columnList})`);
    this.#appender = await this.#connection.createAppender('delivery');
  }

  override _write(row: unknown[], _encoding: string, callback: (error?: Error | null) => void) {
    try {
      this.#appendRow(row);
      callback();
    } catch (error) {
      callback(new ParquetWriteError(this.parquetPath, { cause: error }));
    }
  }

  override _writev(
    chunks: Array<{ chunk: unknown[] }>,
    callback: (error?: Error | null) => void,
  ): void {
    try {
      for (const { chunk } of chunks) {
        this.#appendRow(chunk);
      }

      callback();
    } catch (error) {
      callback(new ParquetWriteError(this.parquetPath, { cause: error }));
    }
  }

  #appendRow(row: unknown[]): void {
    const appender = this.#appender as DuckDBAppender;

    for (let index = 0; index < this.#appenders.length; index += 1) {
      const value = row[index];

      if (value === null || value === undefined) {
        appender.appendNull();
      } else {
        this.#appenders[index]?.(appender, value);
      }
    }

    appender.endRow();
    this.rowCount += 1;

    if (this.rowCount % APPENDER_FLUSH_ROWS === 0) {
      appender.flushSync();
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#writeParquet().then(
      () => callback(),
      (error: unknown) => callback(new ParquetWriteError(this.parquetPath, { cause: error })),
    );
  }

  async #writeParquet(): Promise<void> {
    const startedAtMs = Date.now();

    this.#appender?.closeSync();
    this.#appender = undefined;

    const options = `FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${this.#options.rowGroupRows}`;

    await this.#connection?.run(`COPY delivery TO ${quoteLiteral(this.parquetPath)} (${options})`);
    this.#close();
    this.parquetDurationMs = Date.now() - startedAtMs;
    this.#options.logger.debug(
      { stage: 'duckdb-parquet', rowCount: this.rowCount, durationMs: this.parquetDurationMs },
      'parquet file written',
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#close();
    callback(error);
  }

  #close(): void {
    try {
      this.#appender?.closeSync();
    } catch {
      // The appender fails to close when a row was left half appended; the table is dropped.
    }

    this.#connection?.closeSync();
    this.#instance?.closeSync();
    this.#appender = undefined;
    this.#connection = undefined;
    this.#instance = undefined;
  }
}

/** Creates the DuckDB Parquet sink stage. */
export function createDuckDbParquetSink(options: DuckDbParquetOptions): DuckDbParquetSink {
  return new DuckDbParquetSink(options);
}

import type { Writable } from 'node:stream';
import type pg from 'pg';
import { from as copyFrom, type CopyStreamQuery } from 'pg-copy-streams';
import type { Logger } from '../logger.ts';
import { LoadReferenceError, type ReferenceTable } from '../reference-tables.ts';

/** One file copied into a staging table. */
type CopiedFile = { reference: ReferenceTable; path: string; stream: CopyStreamQuery };

/**
 * Sink of a reference load: one transaction on one connection. Each file streams into a
 * temporary staging table as raw text through {@link ReferenceLoad.createFileSink}. Commit then
 * checks the staged values and replaces the tables with them, converted, so that on any error,
 * invalid value or empty file every table keeps its previous rows. Concurrent loads wait for
 * each other, and readers see the old rows until the load commits.
 */
export class ReferenceLoad {
  private readonly stagedTables = new Set<ReferenceTable>();

  /** The file of the last createFileSink call, checked by rejectEmptyFile. */
  private lastFile: CopiedFile | undefined;

  private isReleased = false;

  private constructor(
    private readonly client: pg.PoolClient,
    private readonly log: Logger,
  ) {}

  /** Takes a connection from the pool and starts the transaction. */
  static async begin(pool: pg.Pool, logger: Logger): Promise<ReferenceLoad> {
    const client = await pool.connect();

    try {
      await client.query('BEGIN');
    } catch (error) {
      client.release(error as Error);

      throw error;
    }

    return new ReferenceLoad(client, logger.child({ stage: 'load-reference' }));
  }

  /**
   * Returns a COPY stream for the lines of one file, in the staging table's COPY text format
   * (see createReferenceCopyRowsTransform). Creates the staging table on first use.
   */
  async createFileSink(reference: ReferenceTable, path: string): Promise<Writable> {
    if (!this.stagedTables.has(reference)) {
      await this.createStagingTable(reference);
      this.stagedTables.add(reference);
    }

    const columnNames = reference.columns.map(([name]) => name);
    const stream = this.client.query(
      copyFrom(
        `COPY ${reference.stagingTable} (source_path, line_number, ${columnNames.join(', ')}) ` +
          'FROM STDIN',
      ),
    );

    stream.on('finish', () => {
      this.log.debug({ path, table: reference.table, rowCount: stream.rowCount }, 'file copied');
    });
    this.lastFile = { reference, path, stream };

    return stream;
  }

  /**
   * Throws a LoadReferenceError when the file last copied had no data rows: a load replaces the
   * whole table, so an empty file is far more likely a mistake than an intent.
   */
  rejectEmptyFile(): void {
    const file = this.lastFile;

    if (file !== undefined && file.stream.rowCount === 0) {
      throw new LoadReferenceError(
        `${file.path} has no data rows; a load replaces the whole ${file.reference.table} ` +
          'table, so check the path or restore the file',
        file.path,
      );
    }
  }

  /**
   * Checks that every value converts, replaces the rows of every table that files were copied
   * for and commits, then returns the connection to the pool. On a failure it rolls back and
   * throws: a LoadReferenceError for an invalid value, the database's error otherwise. Returns
   * the count of rows stored in each table.
   */
  async commit(): Promise<Map<ReferenceTable, number>> {
    try {
      for (const reference of this.stagedTables) {
        await this.rejectInvalidValues(reference);
      }

      // EXCLUSIVE conflicts with itself and with writers but not with SELECT, so a second load
      // waits here, and then deletes the rows this one inserted instead of adding to them.
      const tables = [...this.stagedTables].map((reference) => reference.table);

      await this.client.query(`LOCK TABLE ${tables.join(', ')} IN EXCLUSIVE MODE`);

      const counts = new Map<ReferenceTable, number>();

      for (const reference of this.stagedTables) {
        counts.set(reference, await this.replaceRows(reference));
      }

      await this.client.query('COMMIT');
      this.release();

      return counts;
    } catch (error) {
      await this.rollBack();

      throw error;
    }
  }

  /**
   * Rolls back the transaction and returns the connection to the pool. A connection whose
   * rollback fails is closed instead, which makes the server roll back too. Does nothing once
   * the connection is back in the pool.
   */
  async rollBack(): Promise<void> {
    if (this.isReleased) {
      return;
    }

    try {
      await this.client.query('ROLLBACK');
      this.release();
    } catch (error) {
      this.log.warn({ err: error }, 'rollback failed; closing the connection');
      this.release(error as Error);
    }
  }

  private release(error?: Error): void {
    this.isReleased = true;
    this.client.release(error);
  }

  /** Creates a temporary table of text columns, plus the file and line of each row. */
  private async createStagingTable(reference: ReferenceTable): Promise<void> {
    const columns = reference.columns.map(([name]) => `${name} text`).join(', ');

    await this.client.query(
      `CREATE TEMPORARY TABLE ${reference.stagingTable} ` +
        `(source_path text NOT NULL, line_number integer NOT NULL, ${columns}) ON COMMIT DROP`,
    );
  }

  /**
   * Throws a LoadReferenceError naming the first non-blank value that its conversion function
   * rejects (it returns null), with the number of such values in all files.
   */
  private async rejectInvalidValues(reference: ReferenceTable): Promise<void> {
    const checks = reference.columns
      .filter(([, kind]) => kind.expected !== undefined)
      .map(
        ([name, kind]) =>
          `SELECT source_path, line_number, '${name}' AS column_name, ${name} AS value ` +
          `FROM ${reference.stagingTable} ` +
          `WHERE trusted.clean_text(${name}) IS NOT NULL AND ${kind.convert}(${name}) IS NULL`,
      );
    const result = await this.client.query<InvalidValue>(
      'SELECT *, count(*) OVER () AS invalid_count ' +
        `FROM (${checks.join(' UNION ALL ')}) AS invalid ` +
        'ORDER BY source_path COLLATE "C", line_number LIMIT 1',
    );
    const invalid = result.rows[0];

    if (invalid === undefined) {
      return;
    }

    const kind = reference.columns.find(([name]) => name === invalid.column_name)?.[1];
    const others = Number(invalid.invalid_count) - 1;

    throw new LoadReferenceError(
      `invalid ${invalid.column_name} ${JSON.stringify(invalid.value)} in ` +
        `${invalid.source_path} line ${invalid.line_number}` +
        (others > 0 ? ` (and ${others} more invalid values)` : '') +
        `: expected ${kind?.expected}; fix the value or leave it empty, then load again`,
      invalid.source_path,
      invalid.line_number,
    );
  }

  /** Deletes the rows of the table and inserts the staged rows, converted. Returns their count. */
  private async replaceRows(reference: ReferenceTable): Promise<number> {
    const names = reference.columns.map(([name]) => name);
    const conversions = reference.columns.map(([name, kind]) => `${kind.convert}(${name})`);

    await this.client.query(`DELETE FROM ${reference.table}`);

    const result = await this.client.query(
      `INSERT INTO ${reference.table} (${names.join(', ')}) ` +
        `SELECT ${conversions.join(', ')} FROM ${reference.stagingTable}`,
    );

    return result.rowCount ?? 0;
  }
}

type InvalidValue = {
  source_path: string;
  line_number: number;
  column_name: string;
  value: string;
  invalid_count: string;
};

import type { Readable } from 'node:stream';
import type pg from 'pg';
import QueryStream from 'pg-query-stream';

/** A result column: its name and PostgreSQL type OID. */
export type QueryColumn = { name: string; dataTypeId: number };

/** Removes a final semicolon, so the query can be nested in another statement. */
function asSubquery(sql: string): string {
  return sql.trim().replace(/;\s*$/, '');
}

/** Returns the result columns of a query without running it to completion (LIMIT 0). */
export async function describeQuery(client: pg.ClientBase, sql: string): Promise<QueryColumn[]> {
  // The newlines keep a trailing line comment in the query from hiding the closing parenthesis.
  const result = await client.query(`SELECT * FROM (\n${asSubquery(sql)}\n) AS described LIMIT 0`);

  return result.fields.map((field) => ({ name: field.name, dataTypeId: field.dataTypeID }));
}

export type QuerySourceOptions = {
  /** Rows fetched per cursor round trip; the stream buffers at most this many. */
  batchRows: number;
};

/**
 * Creates a Readable of result rows, each an array in column order, read through a
 * server-side cursor: the stream fetches the next rows only as the consumer reads them.
 */
export function createQuerySource(
  client: pg.ClientBase,
  sql: string,
  options: QuerySourceOptions,
): Readable {
  const stream = new QueryStream(asSubquery(sql), [], {
    batchSize: options.batchRows,
    highWaterMark: options.batchRows,
    rowMode: 'array',
  });

  return client.query(stream);
}

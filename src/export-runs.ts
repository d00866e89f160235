import type pg from 'pg';

/** A value of the delivery input that failed to parse and became null in the report. */
export type InvalidValue = { field: string; value: string; count: number };

/** Records the start of an export and returns the id of its `events.export_runs` row. */
export async function startExportRun(pool: pg.Pool, bucket: string): Promise<number> {
  const result = await pool.query<{ id: string }>(
    'INSERT INTO events.export_runs (bucket) VALUES ($1) RETURNING id',
    [bucket],
  );

  return Number(result.rows[0]?.id);
}

export type FinishedRun = {
  key: string;
  rowCount: number;
  sizeBytes: number;
  invalidValueCount: number;
};

/** Marks an export run as succeeded with what it wrote. */
export async function finishExportRun(pool: pg.Pool, id: number, run: FinishedRun): Promise<void> {
  await pool.query(
    `UPDATE events.export_runs
     SET status = 'succeeded', finished_at = now(), object_key = $2, row_count = $3,
       size_bytes = $4, invalid_value_count = $5
     WHERE id = $1`,
    [id, run.key, run.rowCount, run.sizeBytes, run.invalidValueCount],
  );
}

/** Marks an export run as failed; the next scheduled run tries again. */
export async function failExportRun(pool: pg.Pool, id: number, error: Error): Promise<void> {
  await pool.query(
    `UPDATE events.export_runs
     SET status = 'failed', finished_at = now(), error_message = $2
     WHERE id = $1`,
    [id, error.message],
  );
}

/** Runs the invalid-values query: each field and value that the report turned into null. */
export async function findInvalidValues(client: pg.ClientBase, sql: string): Promise<InvalidValue[]> {
  const result = await client.query<{ field: string; value: string; count: string }>(sql);

  return result.rows.map((row) => ({ field: row.field, value: row.value, count: Number(row.count) }));
}

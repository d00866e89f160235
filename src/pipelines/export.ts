import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import type pg from 'pg';
import { packagePath, type Config } from '../config.ts';
import {
  failExportRun,
  findInvalidValues,
  finishExportRun,
  startExportRun,
  type InvalidValue,
} from '../export-runs.ts';
import type { Logger } from '../logger.ts';
import { createDuckDbParquetSink, toParquetColumns } from '../sinks/duckdb-parquet.ts';
import { deliveryObjectKey, uploadFile } from '../sinks/s3-upload.ts';
import { createQuerySource, describeQuery } from '../sources/postgres-query.ts';

const INVALID_VALUES_QUERY_PATH = packagePath('sql/delivery-invalid-values.sql');

/** How many invalid values one log line lists; the count covers them all. */
const LOGGED_INVALID_VALUES = 20;

export type ExportOptions = {
  config: Config;
  logger: Logger;
  pool: pg.Pool;
  s3: S3Client;
  bucket: string;
  signal?: AbortSignal;
};

export type ExportResult = {
  uri: string;
  bucket: string;
  key: string;
  rowCount: number;
  sizeBytes: number;
  invalidValueCount: number;
  /** Time reading the query into DuckDB, writing Parquet and uploading, and in total. */
  durationsMs: { query: number; parquet: number; upload: number; total: number };
};

/**
 * Runs one export: the delivery query streams through a cursor into DuckDB, DuckDB writes a
 * Parquet file in a temporary folder, and the file goes to S3 as a multipart upload. Every run
 * is recorded in `events.export_runs`, failed ones included; the folder is always removed.
 */
export async function runExport(options: ExportOptions): Promise<ExportResult> {
  const { config, logger, pool, bucket } = options;
  const startedAtMs = Date.now();
  const runId = await startExportRun(pool, bucket);
  const workDir = await mkdtemp(join(tmpdir(), 'sqs-pg-parquet-export-'));
  const key = deliveryObjectKey(config.s3.prefix, new Date());

  try {
    const written = await writeParquet(options, workDir);
    const uploadStartedAtMs = Date.now();
    const { sizeBytes } = await uploadFile({
      s3: options.s3,
      bucket,
      key,
      path: written.parquetPath,
      partSizeBytes: config.s3.partSizeBytes,
      concurrency: config.s3.uploadConcurrency,
      logger,
      signal: options.signal,
    });
    const result: ExportResult = {
      uri: `s3://${bucket}/${key}`,
      bucket,
      key,
      rowCount: written.rowCount,
      sizeBytes,
      invalidValueCount: written.invalidValueCount,
      durationsMs: {
        query: written.queryMs,
        parquet: written.parquetMs,
        upload: Date.now() - uploadStartedAtMs,
        total: Date.now() - startedAtMs,
      },
    };

    await finishExportRun(pool, runId, result);
    logger.info(
      { stage: 'export', bucket, key, rowCount: result.rowCount, bytes: sizeBytes, ...result.durationsMs },
      'export finished',
    );

    return result;
  } catch (error) {
    await failExportRun(pool, runId, error as Error).catch((recordError: unknown) => {
      logger.error({ err: recordError, runId }, 'recording the failed export failed');
    });

    throw error;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

type WrittenFile = {
  parquetPath: string;
  rowCount: number;
  invalidValueCount: number;
  queryMs: number;
  parquetMs: number;
};

/** Streams the delivery query into a Parquet file, inside one read-only snapshot. */
async function writeParquet(options: ExportOptions, workDir: string): Promise<WrittenFile> {
  const { config, logger } = options;
  const sql = await readFile(config.export.queryPath, 'utf8');
  const client = await options.pool.connect();
  let releaseError: Error | undefined;

  try {
    // One snapshot for the check and the rows, so both see the same events.
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');

    const invalidValues = await findInvalidValues(
      client,
      await readFile(INVALID_VALUES_QUERY_PATH, 'utf8'),
    );

    logInvalidValues(logger, invalidValues);

    const columns = toParquetColumns(await describeQuery(client, sql));
    const sink = createDuckDbParquetSink({
      columns,
      workDir,
      rowGroupRows: config.export.rowGroupRows,
      memoryLimit: config.export.duckdbMemoryLimit,
      logger,
    });
    const queryStartedAtMs = Date.now();

    await pipeline(
      createQuerySource(client, sql, { batchRows: config.export.cursorBatchRows }),
      sink,
      { signal: options.signal },
    );
    await client.query('COMMIT');

    return {
      parquetPath: sink.parquetPath,
      rowCount: sink.rowCount,
      invalidValueCount: invalidValues.reduce((total, value) => total + value.count, 0),
      queryMs: Date.now() - queryStartedAtMs - sink.parquetDurationMs,
      parquetMs: sink.parquetDurationMs,
    };
  } catch (error) {
    // The cursor may still be open; this connection is not reused.
    releaseError = error as Error;

    throw error;
  } finally {
    client.release(releaseError);
  }
}

function logInvalidValues(logger: Logger, invalidValues: InvalidValue[]): void {
  if (invalidValues.length === 0) {
    return;
  }

  const valueCount = invalidValues.reduce((total, value) => total + value.count, 0);

  logger.warn(
    {
      stage: 'export',
      invalidValueCount: valueCount,
      invalidValues: invalidValues.slice(0, LOGGED_INVALID_VALUES),
    },
    'values that are not numbers became null in the report',
  );
}

import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { createS3Client, createSqsClient } from '../aws.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { createPool, describeTarget, migrate, waitForPostgres } from '../postgres.ts';

/** Connections every command keeps besides the COPY writers: one for migrations and exports. */
const BASE_CONNECTIONS = 2;

/** Clients a command works with, created once and closed by `close`. */
export type CommandContext = {
  config: Config;
  logger: Logger;
  pool: pg.Pool;
  sqs: SQSClient;
  s3: S3Client;
  close(): Promise<void>;
};

/**
 * Creates the clients, waits up to POSTGRES_STARTUP_WAIT_SECONDS for PostgreSQL to accept
 * connections and ensures the tables exist. Aborting `signal` ends the wait with its
 * AbortError.
 */
export async function openContext(
  config: Config,
  logger: Logger,
  signal?: AbortSignal,
): Promise<CommandContext> {
  const pool = createPool(config, BASE_CONNECTIONS + config.ingest.copyConnections);

  // A pool emits errors of idle connections (a restarted server); the next query reconnects.
  pool.on('error', (error) => logger.warn({ err: error }, 'idle PostgreSQL connection lost'));

  const target = describeTarget(config);
  const waitSeconds = config.postgres.startupWaitSeconds;

  try {
    await waitForPostgres(pool, { waitSeconds, logger, target, signal });
  } catch (error) {
    await pool.end();

    if (signal?.aborted) {
      throw error;
    }

    throw new Error(
      `connecting to PostgreSQL at ${target} failed: ${(error as Error).message}; ` +
        (config.postgres.url === ''
          ? 'check POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD and DB_NAME'
          : 'check DATABASE_URL'),
      { cause: error },
    );
  }

  try {
    await migrate(pool);
  } catch (error) {
    await pool.end();
    throw new Error(
      `creating the schemas in ${describeTarget(config)} failed: ${(error as Error).message}; ` +
        'POSTGRES_USER needs the CREATE privilege on the database',
      { cause: error },
    );
  }

  const sqs = createSqsClient(config);
  const s3 = createS3Client(config);

  return {
    config,
    logger,
    pool,
    sqs,
    s3,
    async close() {
      sqs.destroy();
      s3.destroy();
      await pool.end();
    },
  };
}

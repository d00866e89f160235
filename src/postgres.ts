import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Config } from './config.ts';
import { packagePath } from './config.ts';
import type { Logger } from './logger.ts';
import { classifyFailure } from './sinks/postgres-errors.ts';

/** DDL files applied in this order by migrate; every statement in them is idempotent. */
const MIGRATION_FILES = ['sql/migrate.sql', 'sql/functions.sql'];

/** Serializes concurrent migrations from several processes (an arbitrary, fixed lock id). */
const MIGRATION_LOCK_ID = 0x5350_5051;

/** Builds node-postgres connection options from the configuration. */
export function connectionOptions(config: Config): pg.ClientConfig {
  const { postgres } = config;

  const connectionTimeoutMillis = postgres.connectTimeoutSeconds * 1000;
  // NOTE: a connection that goes silent without closing is found only by TCP keepalive. Its
  // probes follow the kernel's timings, minutes by default, and a batch on it waits that long.
  const keepAlive = { keepAlive: true, keepAliveInitialDelayMillis: 10_000 };

  if (postgres.url !== '') {
    return {
      connectionString: postgres.url,
      application_name: 'sqs-pg-parquet',
      connectionTimeoutMillis,
      ...keepAlive,
    };
  }

  return {
    connectionTimeoutMillis,
    ...keepAlive,
    host: postgres.host,
    port: postgres.port,
    user: postgres.user,
    password: postgres.password,
    database: postgres.database,
    application_name: 'sqs-pg-parquet',
  };
}

/** Creates a connection pool; callers end it. */
export function createPool(config: Config, maxConnections: number): pg.Pool {
  return new pg.Pool({ ...connectionOptions(config), max: maxConnections });
}

/** Pause before the second connection attempt at start; it doubles up to the maximum. */
const FIRST_STARTUP_RETRY_MS = 500;
const MAX_STARTUP_RETRY_MS = 5000;

/**
 * Runs `SELECT 1` until it succeeds. A failure that a retry can clear, such as a refused
 * connection or a server still starting, is retried with growing pauses for up to
 * `waitSeconds`, so that the tool can start before its database. Any other failure, such as
 * a wrong password, and the last one after the wait, are thrown.
 */
export async function waitForPostgres(
  pool: pg.Pool,
  options: { waitSeconds: number; logger: Logger; target: string },
): Promise<void> {
  const deadline = performance.now() + options.waitSeconds * 1000;

  for (let attempt = 1; ; attempt += 1) {
    try {
      await pool.query('SELECT 1');

      if (attempt > 1) {
        options.logger.info({ target: options.target, attempt }, 'PostgreSQL accepts connections');
      }

      return;
    } catch (error) {
      const retryInMs = Math.min(MAX_STARTUP_RETRY_MS, FIRST_STARTUP_RETRY_MS * 2 ** (attempt - 1));

      if (classifyFailure(error) !== 'transient' || performance.now() + retryInMs > deadline) {
        throw error;
      }

      options.logger.warn(
        { err: error, target: options.target, attempt, retryInMs },
        'PostgreSQL does not accept connections yet; retrying',
      );
      await sleep(retryInMs);
    }
  }
}

/** Creates the events and trusted schemas, their tables and functions, where missing. */
export async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();

  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);

    for (const file of MIGRATION_FILES) {
      await client.query(await readFile(packagePath(file), 'utf8'));
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]).catch(() => {});
    client.release();
  }
}

/** Describes where the pool connects, without the password, for log lines and errors. */
export function describeTarget(config: Config): string {
  if (config.postgres.url !== '') {
    const url = new URL(config.postgres.url);

    return `${url.hostname}:${url.port || 5432}/${url.pathname.replace(/^\//, '')}`;
  }

  return `${config.postgres.host}:${config.postgres.port}/${config.postgres.database}`;
}

/** Characters that COPY's text format treats specially inside a value. */
const COPY_SPECIAL = /[\\\n\r\t]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Escapes a value for COPY's text format, so tabs, newlines and backslashes round-trip. */
export function escapeCopyText(value: string): string {
  return value.replace(COPY_SPECIAL, (character) => COPY_ESCAPES[character] ?? character);
}

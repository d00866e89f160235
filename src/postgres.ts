import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Config } from './config.ts';
import { packagePath } from './config.ts';
import type { Logger } from './logger.ts';
import { TRANSIENT_NODE_CODES } from './sinks/postgres-errors.ts';

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

/** Pause before the second connection attempt at start. It doubles up to the maximum. */
const FIRST_STARTUP_RETRY_MS = 500;
const MAX_STARTUP_RETRY_MS = 5000;

/**
 * Socket errors of a server that is not up yet: those of a cut connection, and a host name that
 * does not resolve yet, as in a container network whose database starts later.
 */
const STARTUP_RETRY_NODE_CODES = new Set([...TRANSIENT_NODE_CODES, 'ENOTFOUND']);

/**
 * SQLSTATE codes of a server that cannot take the connection yet: 57P03 while it starts or
 * recovers, 53300 when its connection slots are full.
 */
const STARTUP_RETRY_SQLSTATES = new Set(['57P03', '53300']);

/**
 * Tells whether a failed first connection may succeed later. Wrong credentials, a missing
 * database or a TLS mismatch never do, so they fail at once.
 */
export function isStartupRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;

  if (typeof code === 'string') {
    return (
      STARTUP_RETRY_NODE_CODES.has(code) ||
      STARTUP_RETRY_SQLSTATES.has(code) ||
      code.startsWith('08')
    );
  }

  // node-postgres reports a connection closed or timed out during the handshake as a plain
  // Error: "Connection terminated unexpectedly", "... due to connection timeout".
  return error instanceof Error && error.message.startsWith('Connection terminated');
}

/** PostgreSQL did not accept a connection within the start-up wait. */
export class PostgresUnavailableError extends Error {
  override name = 'PostgresUnavailableError';

  constructor(
    readonly attempts: number,
    readonly elapsedMs: number,
    cause: unknown,
  ) {
    super(
      `${(cause as Error).message} (${attempts === 1 ? '1 attempt' : `${attempts} attempts`} ` +
        `in ${(elapsedMs / 1000).toFixed(1)} s)`,
      { cause },
    );
  }
}

/**
 * Runs `SELECT 1` until it succeeds, so that the tool can start before its database. A
 * failure that isStartupRetryable accepts is retried with growing pauses until `waitSeconds`
 * have passed. Then, or at once for any other failure, it throws a PostgresUnavailableError
 * with the last failure as its cause. Aborting `signal` stops the wait with an AbortError
 * after the attempt under way, which the connect timeout bounds.
 */
export async function waitForPostgres(
  pool: pg.Pool,
  options: { waitSeconds: number; logger: Logger; target: string; signal?: AbortSignal },
): Promise<void> {
  const { logger, target, signal } = options;
  const startedAt = performance.now();
  const deadline = startedAt + options.waitSeconds * 1000;

  for (let attempt = 1; ; attempt += 1) {
    signal?.throwIfAborted();

    try {
      await pool.query('SELECT 1');

      if (attempt > 1) {
        logger.info({ target, attempt }, 'PostgreSQL accepts connections');
      }

      return;
    } catch (error) {
      const remainingMs = deadline - performance.now();

      if (!isStartupRetryable(error) || remainingMs <= 0) {
        throw new PostgresUnavailableError(attempt, performance.now() - startedAt, error);
      }

      const retryInMs = Math.round(
        Math.min(remainingMs, MAX_STARTUP_RETRY_MS, FIRST_STARTUP_RETRY_MS * 2 ** (attempt - 1)),
      );

      logger.warn(
        { err: error, target, attempt, retryInMs },
        'PostgreSQL does not accept connections yet; retrying',
      );
      await sleep(retryInMs, undefined, { signal });
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

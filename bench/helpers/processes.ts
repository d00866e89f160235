import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** Characters of a failed child's standard error quoted in the error message. */
const STDERR_TAIL_CHARACTERS = 4000;

/** Time the emulator gets to print its endpoint. */
const EMULATOR_START_TIMEOUT_MS = 30_000;

/** Children started by spawnTsx that have not exited yet. */
const liveChildren = new Set<ChildProcess>();

/** Starts `node NODE_FLAGS --import tsx SCRIPT ARGS...` with the given extra environment. */
function spawnTsx(
  scriptUrl: URL,
  args: string[],
  env: NodeJS.ProcessEnv,
  nodeFlags: string[] = [],
): ChildProcess {
  const child = spawn(
    process.execPath,
    [...nodeFlags, '--import', 'tsx', fileURLToPath(scriptUrl), ...args],
    {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );

  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));

  return child;
}

/** Kills every worker and emulator process this process started that is still running. */
export function killChildProcesses(): void {
  for (const child of liveChildren) {
    child.kill('SIGKILL');
  }
}

/** A worker failed, timed out or printed no result line. */
export class WorkerError extends Error {
  override name = 'WorkerError';
}

export type WorkerOptions = {
  /** The worker is killed and the call fails after this long. */
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  /** Node.js flags for the worker, such as `--cpu-prof`. */
  nodeFlags?: string[];
  /** Called with each line the worker prints before its result, such as progress samples. */
  onLine?: (line: string) => void;
};

/**
 * Runs a worker script in a child process, passing `input` as JSON in its first argument, and
 * returns the JSON object on the last line of its standard output. Each measured run gets a
 * process of its own, so that peak RSS and CPU time of one run do not mix with another's.
 */
export async function runWorker<T>(
  scriptUrl: URL,
  input: unknown,
  options: WorkerOptions,
): Promise<T> {
  const child = spawnTsx(scriptUrl, [JSON.stringify(input)], options.env ?? {}, options.nodeFlags);
  const lines: string[] = [];
  let stderr = '';

  child.stdin?.end();
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_TAIL_CHARACTERS);
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    options.onLine?.(line);
  });

  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
  const exit = await new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });

  clearTimeout(timer);

  const name = fileURLToPath(scriptUrl);

  if (exit.code !== 0) {
    const reason =
      exit.signal === 'SIGKILL'
        ? `timed out after ${options.timeoutMs} ms`
        : `exited with ${exit.code ?? exit.signal}`;

    throw new WorkerError(`worker ${name} ${reason}; its standard error ended with:\n${stderr}`);
  }

  const lastLine = lines.at(-1);

  if (lastLine === undefined) {
    throw new WorkerError(`worker ${name} printed no result line; standard error:\n${stderr}`);
  }

  return JSON.parse(lastLine) as T;
}

/** The emulator running in a child process. */
export type EmulatorProcess = {
  endpointUrl: string;
  pid: number;
  stop(): Promise<void>;
};

/** Starts bench/helpers/emulator-process.ts and waits for the endpoint it prints. */
export async function startEmulatorProcess(): Promise<EmulatorProcess> {
  const child = spawnTsx(new URL('./emulator-process.ts', import.meta.url), [], {});
  let stderr = '';

  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_TAIL_CHARACTERS);
  });

  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const firstLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new WorkerError(`the emulator printed no endpoint within ${EMULATOR_START_TIMEOUT_MS} ms`),
      );
    }, EMULATOR_START_TIMEOUT_MS);

    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new WorkerError(`the emulator exited before it listened; standard error:\n${stderr}`));
    });
  });
  const { endpointUrl } = JSON.parse(firstLine) as { endpointUrl: string };

  return {
    endpointUrl,
    pid: child.pid ?? 0,
    async stop() {
      child.stdin?.end();
      await exited;
    },
  };
}

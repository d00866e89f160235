import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describeSettings, type Config } from '../../src/config.ts';
import type { LogLine } from './logs.ts';

const CLI_PATH = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
const REPOSITORY_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** How the process ended: an exit status, or the signal that killed it. */
export type CliExit = { code: number | null; signal: NodeJS.Signals | null; atMs: number };

/** A running `sqs-pg-parquet` command with its parsed log lines. */
export type CliProcess = {
  child: ChildProcess;
  /** Parsed JSON log lines from standard error, in order. */
  logs: LogLine[];
  /** Standard error lines that are not JSON, such as a fatal error message. */
  otherStderr: string[];
  exited: Promise<CliExit>;
  /** Resolves with the first log line with this message, or fails after `timeoutMs`. */
  waitForLog(message: string, timeoutMs: number): Promise<LogLine>;
};

/** Environment that points the command at a configuration's database, emulator, queue and bucket. */
export function cliEnvironment(config: Config): NodeJS.ProcessEnv {
  return {
    POSTGRES_HOST: config.postgres.host,
    POSTGRES_PORT: String(config.postgres.port),
    POSTGRES_USER: config.postgres.user,
    POSTGRES_PASSWORD: config.postgres.password,
    DB_NAME: config.postgres.database,
    AWS_ENDPOINT_URL: config.aws.endpointUrl,
    AWS_ACCESS_KEY_ID: config.aws.accessKeyId,
    AWS_SECRET_ACCESS_KEY: config.aws.secretAccessKey,
    AWS_DEFAULT_REGION: config.aws.region,
    SQS_QUEUE_URL: config.sqs.queueUrl,
    S3_BUCKET_NAME: config.s3.bucket,
    LOG_LEVEL: 'debug',
  };
}

/**
 * Spawns `node --import tsx src/cli.ts ARGS` from the repository root, with the parent's
 * environment less the tool's own settings, plus `env`.
 */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv): CliProcess {
  const startedAtMs = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', CLI_PATH, ...args], {
    cwd: REPOSITORY_ROOT,
    env: { ...withoutSettings(process.env), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const otherStderr: string[] = [];
  const waiters: Array<{ message: string; resolve: (line: LogLine) => void }> = [];

  createInterface({ input: child.stderr! }).on('line', (text) => {
    const line = parseLogLine(text);

    if (line === undefined) {
      otherStderr.push(text);

      return;
    }

    logs.push(line);

    for (const waiter of waiters.filter((candidate) => candidate.message === line.msg)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  });
  child.stdout?.resume();

  const exited = new Promise<CliExit>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal, atMs: Date.now() - startedAtMs }));
  });

  return {
    child,
    logs,
    otherStderr,
    exited,
    waitForLog(message, timeoutMs) {
      const seen = logs.find((line) => line.msg === message);

      if (seen !== undefined) {
        return Promise.resolve(seen);
      }

      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const tail = [...logs.slice(-5).map((line) => line.msg), ...otherStderr.slice(-5)];

          const lastLines = tail.join(' | ');

          reject(new Error(`no "${message}" log within ${timeoutMs} ms; last lines: ${lastLines}`));
        }, timeoutMs);

        waiters.push({
          message,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
  };
}

function parseLogLine(text: string): LogLine | undefined {
  if (!text.startsWith('{')) {
    return undefined;
  }

  try {
    return JSON.parse(text) as LogLine;
  } catch {
    return undefined;
  }
}

/** Environment variables that configure the tool, as `--settings` lists them. */
const SETTING_NAMES = new Set(describeSettings().map((setting) => setting.env));

/** Drops settings the test did not choose, so a developer's environment cannot leak in. */
function withoutSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const kept: NodeJS.ProcessEnv = {};

  for (const [name, value] of Object.entries(env)) {
    if (!SETTING_NAMES.has(name)) {
      kept[name] = value;
    }
  }

  return kept;
}

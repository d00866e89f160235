/**
 * Chaos run of the ingest. It runs the real CLI (`run --pipelines ingest`) as a child process
 * and sends it N messages built from the complaint CSVs, a share of them poison. Meanwhile it
 * SIGKILLs the ingest, which is restarted, and stops and starts PostgreSQL. Then it waits for
 * the queue to drain and checks the delivery guarantee. The last five lines of standard output
 * are the figures: sent, stored, dead-lettered, duplicates, left in queue. It exits 1 if the guarantee does not
 * hold or the queue does not drain in time, and 2 on invalid arguments.
 *
 *   node --import tsx bench/chaos.ts --messages 20000 [--poison-ratio 0.02] [--kills 5]
 *     [--pg-restarts 3] [--time-limit-seconds 900]
 *
 * Everything runs on 127.0.0.1: the emulator in a child process of its own, an embedded
 * PostgreSQL in a temporary folder, and the ingest processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  SendMessageBatchCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import pg from 'pg';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { createSqsClient } from '../src/aws.ts';
import { BUNDLED_SCHEMA_PATH, loadConfig, SQS_MAX_BATCH_ENTRIES } from '../src/config.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/local/embedded-postgres.ts';
import { createLogger } from '../src/logger.ts';
import { connectionOptions, migrate } from '../src/postgres.ts';
import { createComplaintCsvSource, type ComplaintRecord } from '../src/sources/complaint-csv.ts';
import { countQueueMessages } from '../test/helpers/aws.ts';

const CLI_PATH = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const REPOSITORY_ROOT = fileURLToPath(new URL('../', import.meta.url));
const SHARED_DATA_DIR = new URL('../../shared/data/reclamacoes/', import.meta.url);
const SAMPLE_DATA_DIR = new URL('../samples/reclamacoes/', import.meta.url);

/** SendMessageBatch calls in flight while the messages are sent. */
const SEND_CONCURRENCY = 8;

/** Visibility timeout of the ingest processes: short, so a killed process's messages return soon. */
const VISIBILITY_TIMEOUT_SECONDS = 5;

/** Long-poll wait of the ingest processes; a killed process's waiting polls live this long. */
const WAIT_TIME_SECONDS = 5;

/** Random pause before each fault, and how long PostgreSQL stays down, in milliseconds. */
const FAULT_DELAY_RANGE_MS: [number, number] = [500, 2500];
const OUTAGE_RANGE_MS: [number, number] = [500, 3000];

/** Pause before a stopped ingest process is started again. */
const RESTART_DELAY_MS = 500;

const EMULATOR_START_TIMEOUT_MS = 30_000;
const DRAIN_POLL_INTERVAL_MS = 500;

type ChaosOptions = {
  messageCount: number;
  poisonRatio: number;
  killCount: number;
  pgRestartCount: number;
  timeLimitSeconds: number;
};

/** Invalid command-line arguments. */
class UsageError extends Error {
  override name = 'UsageError';
}

function parseOptions(args: string[]): ChaosOptions {
  const { values } = parseArgs({
    args,
    options: {
      messages: { type: 'string', default: '20000' },
      'poison-ratio': { type: 'string', default: '0.02' },
      kills: { type: 'string', default: '5' },
      'pg-restarts': { type: 'string', default: '3' },
      'time-limit-seconds': { type: 'string', default: '900' },
    },
    strict: true,
  });
  const options: ChaosOptions = {
    messageCount: Number(values.messages),
    poisonRatio: Number(values['poison-ratio']),
    killCount: Number(values.kills),
    pgRestartCount: Number(values['pg-restarts']),
    timeLimitSeconds: Number(values['time-limit-seconds']),
  };

  if (!Number.isInteger(options.messageCount) || options.messageCount < 1) {
    throw new UsageError(`invalid --messages "${values.messages}": use a positive integer`);
  }

  if (!(options.poisonRatio >= 0 && options.poisonRatio <= 1)) {
    throw new UsageError(`invalid --poison-ratio "${values['poison-ratio']}": use 0 to 1`);
  }

  for (const [name, value] of [
    ['--kills', options.killCount],
    ['--pg-restarts', options.pgRestartCount],
  ] as const) {
    if (!Number.isInteger(value) || value < 0) {
      throw new UsageError(`invalid ${name} "${value}": use an integer of 0 or more`);
    }
  }

  if (!Number.isInteger(options.timeLimitSeconds) || options.timeLimitSeconds < 1) {
    throw new UsageError(
      `invalid --time-limit-seconds "${values['time-limit-seconds']}": use a positive integer`,
    );
  }

  return options;
}

function log(message: string): void {
  process.stderr.write(`chaos: ${message}\n`);
}

function randomBetween([low, high]: [number, number]): number {
  return Math.round(low + Math.random() * (high - low));
}

/** Reads every complaint row of the shared data, or of the bundled samples without it. */
async function readComplaints(recordType: RecordType): Promise<ComplaintRecord[]> {
  let dataDir = SHARED_DATA_DIR;

  if (!existsSync(dataDir)) {
    log(`${fileURLToPath(dataDir)} not found; using the samples in ${fileURLToPath(SAMPLE_DATA_DIR)}`);
    dataDir = SAMPLE_DATA_DIR;
  }

  const logger = createLogger('silent');
  const names = (await readdir(dataDir)).filter((name) => name.endsWith('.csv')).sort();
  const records: ComplaintRecord[] = [];

  for (const name of names) {
    const file = fileURLToPath(new URL(name, dataDir));

    for await (const record of createComplaintCsvSource(file, { recordType, logger })) {
      records.push(record as ComplaintRecord);
    }
  }

  if (records.length === 0) {
    throw new Error(`no complaint rows found in ${fileURLToPath(dataDir)}`);
  }

  return records;
}

/**
 * Builds one body per message. Rows are reused in turn, with the copy number appended to the
 * institution name from the second pass on, so no two bodies are equal. Poison bodies are
 * spread evenly and rotate through the kinds of bad input.
 */
function buildBodies(
  records: ComplaintRecord[],
  recordType: RecordType,
  options: ChaosOptions,
): string[] {
  const bodies: string[] = [];

  for (let index = 0; index < options.messageCount; index += 1) {
    const isPoison =
      Math.floor((index + 1) * options.poisonRatio) > Math.floor(index * options.poisonRatio);
    const row = records[index % records.length] as ComplaintRecord;
    const copy = Math.floor(index / records.length);
    const name = row.instituicao_financeira ?? '';
    const record = { ...row, instituicao_financeira: copy === 0 ? name : `${name} (copy ${copy})` };
    const body = isPoison
      ? poisonBody(record, recordType, index)
      : recordType.toBuffer(record).toString('base64');

    bodies.push(body);
  }

  return bodies;
}

function poisonBody(record: ComplaintRecord, recordType: RecordType, index: number): string {
  const encoded = recordType.toBuffer(record);
  const kinds = [
    () => `not base64, message ${index}!`,
    () => Buffer.from(`plain text ${index}`).toString('base64'),
    () => encoded.subarray(0, encoded.length - 2).toString('base64'),
    () => Buffer.concat([encoded, Buffer.from([index % 256])]).toString('base64'),
    () => recordType.toBuffer({ ...record, tipo: `nul\u0000${index}` }).toString('base64'),
  ];

  return (kinds[index % kinds.length] as () => string)();
}

/** Starts `sqs-pg-parquet emulator` and returns it with the settings it prints. */
async function startEmulatorProcess(): Promise<{
  child: ChildProcess;
  settings: Record<string, string>;
}> {
  const name = `chaos-${randomBytes(4).toString('hex')}`;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', CLI_PATH, 'emulator', '--port', '0', '--queue', name, '--bucket', name],
    {
      cwd: REPOSITORY_ROOT,
      env: { ...process.env, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const settings: Record<string, string> = {};

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`the emulator did not start within ${EMULATOR_START_TIMEOUT_MS} ms`));
    }, EMULATOR_START_TIMEOUT_MS);

    child.once('exit', (code) => reject(new Error(`the emulator exited with status ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const [key, ...rest] = line.split('=');

      settings[key ?? ''] = rest.join('=');

      if (key === 'S3_BUCKET_NAME') {
        clearTimeout(timer);
        resolve();
      }
    });
  });

  return { child, settings };
}

/** Sends every body, ten per SendMessageBatch call, SEND_CONCURRENCY calls at a time. */
async function sendAll(sqs: SQSClient, queueUrl: string, bodies: string[]): Promise<void> {
  let next = 0;

  const sendLoop = async () => {
    while (next < bodies.length) {
      const start = next;

      next += SQS_MAX_BATCH_ENTRIES;

      const entries = bodies.slice(start, start + SQS_MAX_BATCH_ENTRIES).map((body, index) => ({
        Id: String(index),
        MessageBody: body,
      }));
      const response = await sqs.send(
        new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }),
      );

      if ((response.Failed ?? []).length > 0) {
        throw new Error(`sending messages failed: ${JSON.stringify(response.Failed)}`);
      }
    }
  };

  await Promise.all(Array.from({ length: SEND_CONCURRENCY }, sendLoop));
}

type Figures = { stored: number; deadLettered: number; duplicates: number };

/** Counts rows and dead letters, and message ids that appear more than once across both. */
async function readFigures(pool: pg.Pool): Promise<Figures> {
  const { rows } = await pool.query<{ stored: number; dead_lettered: number; duplicates: number }>(`
    WITH ids AS (
      SELECT message_id FROM events.reclamacoes_sqs_events
      UNION ALL
      SELECT message_id FROM events.dead_letters
    )
    SELECT
      (SELECT count(*) FROM events.reclamacoes_sqs_events)::int AS stored,
      (SELECT count(*) FROM events.dead_letters)::int AS dead_lettered,
      (SELECT count(*) - count(DISTINCT message_id) FROM ids)::int AS duplicates`);
  const row = rows[0];

  return {
    stored: row?.stored ?? 0,
    deadLettered: row?.dead_lettered ?? 0,
    duplicates: row?.duplicates ?? 0,
  };
}

/**
 * Keeps one ingest process running: whenever it exits (killed, or failing to start while the
 * database is down) a new one starts, until `stop` is called. Their logs go to `logPath`.
 */
class IngestSupervisor {
  readonly #env: NodeJS.ProcessEnv;
  readonly #logStream;
  #child: ChildProcess | undefined;
  #isStopping = false;
  startCount = 0;

  constructor(env: NodeJS.ProcessEnv, logPath: string) {
    this.#env = env;
    this.#logStream = createWriteStream(logPath);
  }

  start(): void {
    if (this.#isStopping) {
      return;
    }

    const args = ['--import', 'tsx', CLI_PATH, 'run', '--pipelines', 'ingest'];
    const child = spawn(process.execPath, args, {
      cwd: REPOSITORY_ROOT,
      env: this.#env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });

    this.startCount += 1;
    this.#child = child;
    child.stderr?.pipe(this.#logStream, { end: false });
    child.once('exit', () => {
      if (this.#child === child) {
        this.#child = undefined;
        setTimeout(() => this.start(), RESTART_DELAY_MS);
      }
    });
  }

  /** SIGKILLs the running process, if any, and returns its pid. The supervisor starts a new one. */
  kill(): number | undefined {
    const pid = this.#child?.pid;

    this.#child?.kill('SIGKILL');

    return pid;
  }

  /**
   * Stops restarting and ends the running process with SIGTERM. Returns its exit status, or
   * null when no process was running.
   */
  async stop(): Promise<number | null> {
    this.#isStopping = true;

    const child = this.#child;
    let exitCode: number | null = null;

    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));

      child.kill('SIGTERM');
      exitCode = await exited;
    }

    this.#logStream.end();

    return exitCode;
  }
}

/** Kills ingest processes and restarts PostgreSQL in turn, with random pauses between. */
async function injectFaults(
  options: ChaosOptions,
  supervisor: IngestSupervisor,
  server: EmbeddedServer,
): Promise<void> {
  let kills = options.killCount;
  let restarts = options.pgRestartCount;

  while (kills + restarts > 0) {
    await sleep(randomBetween(FAULT_DELAY_RANGE_MS));

    const isKill = restarts === 0 || (kills > 0 && Math.random() < kills / (kills + restarts));

    if (isKill) {
      const pid = supervisor.kill();

      kills -= 1;
      log(`SIGKILL ingest process ${pid ?? '(none running)'}`);
    } else {
      const outageMs = randomBetween(OUTAGE_RANGE_MS);

      await server.shutdown();
      log(`PostgreSQL stopped for ${outageMs} ms`);
      await sleep(outageMs);
      await server.start();
      restarts -= 1;
    }
  }
}

/** Waits until every message is accounted for and the queue is empty. Returns false on time-out. */
async function waitForDrain(
  pool: pg.Pool,
  sqs: SQSClient,
  queueUrl: string,
  messageCount: number,
  deadlineMs: number,
): Promise<boolean> {
  while (Date.now() < deadlineMs) {
    const figures = await readFigures(pool).catch(() => undefined);
    const queued = await countQueueMessages(sqs, queueUrl);

    if (figures !== undefined && figures.stored + figures.deadLettered >= messageCount && queued === 0) {
      return true;
    }

    await sleep(DRAIN_POLL_INTERVAL_MS);
  }

  return false;
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const startedAtMs = Date.now();
  const deadlineMs = startedAtMs + options.timeLimitSeconds * 1000;
  const recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
  const bodies = buildBodies(await readComplaints(recordType), recordType, options);
  const workDir = await mkdtemp(join(tmpdir(), 'sqs-pg-parquet-chaos-'));
  const emulator = await startEmulatorProcess();
  const server = await startEmbeddedPostgres();
  const databaseEnv = {
    POSTGRES_HOST: server.host,
    POSTGRES_PORT: String(server.port),
    POSTGRES_USER: server.user,
    POSTGRES_PASSWORD: server.password,
    DB_NAME: server.database,
  };
  const config = loadConfig({ ...databaseEnv, ...emulator.settings }, '');
  const sqs = createSqsClient(config);
  const pool = new pg.Pool({ ...connectionOptions(config), max: 2 });
  const supervisor = new IngestSupervisor(
    {
      ...process.env,
      ...databaseEnv,
      ...emulator.settings,
      SQS_VISIBILITY_TIMEOUT_SECONDS: String(VISIBILITY_TIMEOUT_SECONDS),
      SQS_WAIT_TIME_SECONDS: String(WAIT_TIME_SECONDS),
      LOG_LEVEL: 'info',
    },
    join(workDir, 'ingest.log'),
  );

  pool.on('error', () => {});

  try {
    await migrate(pool);
    log(`ingest logs go to ${join(workDir, 'ingest.log')}`);
    supervisor.start();

    // Messages arrive while the faults happen, as they would in production.
    const sent = sendAll(sqs, config.sqs.queueUrl, bodies).then(() => {
      log(`${bodies.length} messages sent after ${Date.now() - startedAtMs} ms`);
    });

    await injectFaults(options, supervisor, server);
    await sent;
    log('faults done; waiting for the queue to drain');

    const isDrained = await waitForDrain(pool, sqs, config.sqs.queueUrl, bodies.length, deadlineMs);
    const exitCode = await supervisor.stop();
    const figures = await readFigures(pool);
    const leftInQueue = await countQueueMessages(sqs, config.sqs.queueUrl);

    process.stdout.write(
      `ingest processes started: ${supervisor.startCount}\n` +
        `last ingest exit status: ${exitCode}\n` +
        `duration: ${((Date.now() - startedAtMs) / 1000).toFixed(1)} s\n` +
        `sent: ${bodies.length}\n` +
        `stored: ${figures.stored}\n` +
        `dead-lettered: ${figures.deadLettered}\n` +
        `duplicates: ${figures.duplicates}\n` +
        `left in queue: ${leftInQueue}\n`,
    );

    if (!isDrained) {
      log(`the queue did not drain within ${options.timeLimitSeconds} s (--time-limit-seconds)`);

      return 1;
    }

    const isExact =
      figures.stored + figures.deadLettered === bodies.length &&
      figures.duplicates === 0 &&
      leftInQueue === 0;

    if (!isExact) {
      log('the delivery guarantee did not hold: see the figures above');
    }

    return isExact ? 0 : 1;
  } finally {
    await supervisor.stop();
    sqs.destroy();
    await pool.end();
    emulator.child.kill('SIGTERM');
    await server.stop();
  }
}

main().then(
  (exitCode) => {
    process.exitCode = exitCode;
  },
  (error: unknown) => {
    log(error instanceof Error ? error.message : String(error));
    process.exitCode = error instanceof UsageError ? 2 : 1;
  },
);

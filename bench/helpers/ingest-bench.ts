import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateQueueCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { RecordType } from '../../src/avro.ts';
import { createSqsClient } from '../../src/aws.ts';
import type { Logger } from '../../src/logger.ts';
import { countQueueMessages } from '../../test/helpers/aws.ts';
import {
  complaintEntries,
  feedQueue,
  preloadQueue,
  takeEntries,
  type ComplaintRecords,
} from './complaint-messages.ts';
import type { BenchEnvironment } from './environment.ts';
import { formatCount } from './format.ts';
import type { IngestMode, IngestWorkerInput, IngestWorkerResult } from './ingest-worker.ts';
import { readProcessTreeCpuMs } from './measure.ts';
import { runWorker } from './processes.ts';

const WORKER_SCRIPT = new URL('./ingest-worker.ts', import.meta.url);

/** A run fails when it is slower than this, a bound far below every rate measured. */
const MIN_MESSAGES_PER_SECOND = 100;

const WORKER_START_ALLOWANCE_MS = 60_000;

/** Plan of one run. */
export type RunPlan = {
  mode: IngestMode;
  messageCount: number;
  /**
   * Preload only this many messages and send the rest while the run drains the queue, keeping
   * it at most this deep. Without it every message is sent before the run starts.
   */
  maxDepth?: number;
  /** Stop the run gracefully after this long; the messages left stay in the queue. */
  stopAfterMs?: number;
  /** Lock the events table `afterMs` after the start, for `forMs`. */
  lock?: { afterMs: number; forMs: number };
  /** Settings of this run only, such as `{ SQS_RECEIVE_CONCURRENCY: '16' }`. */
  settings?: Record<string, string>;
};

/** A finished run with the CPU time the emulator and PostgreSQL spent during it. */
export type RunReport = IngestWorkerResult & {
  plan: RunPlan;
  /** Messages sent to the queue: all of them, unless the run was stopped early. */
  sentCount: number;
  leftCount: number;
  emulatorCpuMs: number | undefined;
  postgresCpuMs: number | undefined;
};

/** Address at which the runs reach SQS: the emulator itself, or a delaying proxy in front of it. */
export type Endpoint = { url: string; close(): Promise<void> };

export type IngestBenchOptions = {
  environment: BenchEnvironment;
  input: ComplaintRecords;
  recordType: RecordType;
  endpoint: Endpoint;
  logger: Logger;
  /** Node.js flags of each run's process, such as `--cpu-prof`. */
  nodeFlags: string[];
};

function difference(after: number | undefined, before: number | undefined): number | undefined {
  return after === undefined || before === undefined ? undefined : after - before;
}

/** Runs ingest workers against queues it fills, and checks that each run lost nothing. */
export class IngestBench {
  readonly #options: IngestBenchOptions;
  readonly #sqs: SQSClient;

  constructor(options: IngestBenchOptions) {
    this.#options = options;
    this.#sqs = createSqsClient(options.environment.config);
  }

  close(): void {
    this.#sqs.destroy();
  }

  /** Fills a new queue, runs one worker on it and checks the result. */
  async run(plan: RunPlan): Promise<RunReport> {
    const { environment, input, recordType, logger } = this.#options;
    const { database, emulator, postgresPid } = environment;
    const queueName = `bench-${plan.mode}-${randomBytes(4).toString('hex')}`;
    const { QueueUrl = '' } = await this.#sqs.send(
      new CreateQueueCommand({ QueueName: queueName }),
    );
    const entries = complaintEntries(input.records, recordType, plan.messageCount);
    const preloadCount = Math.min(plan.messageCount, plan.maxDepth ?? plan.messageCount);

    process.stderr.write(`bench: ${plan.mode}: preloading ${formatCount(preloadCount)} messages\n`);

    const preloadedCount = await preloadQueue(
      this.#sqs,
      QueueUrl,
      takeEntries(entries, preloadCount),
      logger,
    );

    await database.pool.query('TRUNCATE events.reclamacoes_sqs_events, events.dead_letters');
    await database.pool.query('CHECKPOINT');

    const emulatorCpuBefore = readProcessTreeCpuMs(emulator.pid);
    const postgresCpuBefore =
      postgresPid === undefined ? undefined : readProcessTreeCpuMs(postgresPid);
    const feeding = new AbortController();
    const fed =
      plan.maxDepth === undefined
        ? Promise.resolve(0)
        : feedQueue(this.#sqs, QueueUrl, entries, {
            maxDepth: plan.maxDepth,
            logger,
            signal: feeding.signal,
          });

    process.stderr.write(
      `bench: ${plan.mode}: running on ${formatCount(plan.messageCount)} messages\n`,
    );

    let result: IngestWorkerResult;

    try {
      result = await this.#runWorker(plan, QueueUrl);
    } finally {
      feeding.abort();
    }

    const sentCount = preloadedCount + (await fed);
    const leftCount = await this.#check(plan, QueueUrl, sentCount, result);

    return {
      ...result,
      plan,
      sentCount,
      leftCount,
      emulatorCpuMs: difference(readProcessTreeCpuMs(emulator.pid), emulatorCpuBefore),
      postgresCpuMs:
        postgresPid === undefined
          ? undefined
          : difference(readProcessTreeCpuMs(postgresPid), postgresCpuBefore),
    };
  }

  async #runWorker(plan: RunPlan, queueUrl: string): Promise<IngestWorkerResult> {
    const input: IngestWorkerInput = {
      mode: plan.mode,
      messageCount: plan.messageCount,
      stopAfterMs: plan.stopAfterMs,
    };
    // While the queue is being fed, a receive waits a second for new messages before it
    // counts the queue as empty. On a preloaded queue an empty receive means the end.
    const waitTimeSeconds = plan.maxDepth === undefined ? '0' : '1';

    return runWorker<IngestWorkerResult>(WORKER_SCRIPT, input, {
      timeoutMs: WORKER_START_ALLOWANCE_MS + (plan.messageCount / MIN_MESSAGES_PER_SECOND) * 1000,
      env: this.#options.environment.workerEnv(this.#options.endpoint.url, {
        SQS_QUEUE_URL: queueUrl,
        SQS_WAIT_TIME_SECONDS: waitTimeSeconds,
        ...plan.settings,
      }),
      nodeFlags: this.#options.nodeFlags,
      onLine: (line) => {
        if (plan.lock && line.includes('"started"')) {
          void this.#lockEvents(plan.lock.afterMs, plan.lock.forMs);
        }
      },
    });
  }

  /** Holds an ACCESS EXCLUSIVE lock on the events table, which stalls every COPY batch. */
  async #lockEvents(afterMs: number, forMs: number): Promise<void> {
    const client = await this.#options.environment.database.pool.connect();

    try {
      await sleep(afterMs);
      await client.query('BEGIN');
      await client.query('LOCK TABLE events.reclamacoes_sqs_events IN ACCESS EXCLUSIVE MODE');
      process.stderr.write(`bench: events table locked for ${forMs} ms\n`);
      await sleep(forMs);
      await client.query('COMMIT');
      process.stderr.write('bench: events table unlocked\n');
    } finally {
      client.release();
    }
  }

  /**
   * Fails the benchmark unless every message sent was either deleted or is still in the queue,
   * and the events table has one row per deleted message (its primary key rules out a message
   * stored twice). Returns the number of messages left.
   */
  async #check(plan: RunPlan, queueUrl: string, sentCount: number, result: IngestWorkerResult) {
    const leftCount = await countQueueMessages(this.#sqs, queueUrl);
    const { rows } = await this.#options.environment.database.pool.query<{ count: string }>(
      'SELECT count(*) FROM events.reclamacoes_sqs_events',
    );
    const storedRows = Number(rows[0]?.count);
    const expectedRows = plan.mode === 'limit' ? 0 : result.deletedCount;
    const expectedLeft = plan.stopAfterMs === undefined ? 0 : sentCount - result.deletedCount;

    if (
      leftCount !== expectedLeft ||
      result.deletedCount + leftCount !== sentCount ||
      storedRows !== expectedRows
    ) {
      throw new Error(
        `${plan.mode} run is wrong: of ${sentCount} messages sent, ${result.deletedCount} were ` +
          `deleted and ${leftCount} are left, and ${storedRows} rows are stored; expected ` +
          `${expectedLeft} left and ${expectedRows} rows`,
      );
    }

    return leftCount;
  }
}

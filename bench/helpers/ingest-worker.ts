/**
 * One measured ingest run, in a process of its own. The settings come from the environment as
 * for the tool itself (POSTGRES_*, AWS_*, SQS_QUEUE_URL and the tuning variables); the first
 * argument is a JSON IngestWorkerInput. It prints `{"event":"started"}` when the clock starts
 * and the IngestWorkerResult as its last line.
 */
import {
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { loadRecordType, type RecordType } from '../../src/avro.ts';
import { createSqsClient } from '../../src/aws.ts';
import {
  loadConfig,
  SQS_MAX_BATCH_ENTRIES,
  SQS_MAX_WAIT_SECONDS,
  type Config,
} from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { runIngest } from '../../src/pipelines/ingest.ts';
import { createPool } from '../../src/postgres.ts';
import { decodeBody } from '../../src/transforms/avro-decode.ts';
import { measure, type Measurement } from './measure.ts';
import { ThreadedSqsClient } from './threaded-sqs-client.ts';

/**
 * Kind of run. `tool` runs the ingest pipeline. `baseline` runs the original design, which
 * receives ten messages, then inserts and deletes each of them on its own. `limit` only
 * receives and deletes, with no decoding and no database, to find what the emulator sustains.
 */
export type IngestMode = 'tool' | 'baseline' | 'limit';

export type IngestWorkerInput = {
  mode: IngestMode;
  messageCount: number;
  /** Stop gracefully after this long, even if messages are left in the queue. */
  stopAfterMs?: number;
};

export type IngestWorkerResult = {
  mode: IngestMode;
  deletedCount: number;
  storedCount: number;
  receiveConcurrency: number;
  measurement: Measurement;
};

/** Connections of the baseline: one per message of a receive, as its ten run at once. */
const BASELINE_CONNECTIONS = SQS_MAX_BATCH_ENTRIES;

const INSERT_EVENT = `
  INSERT INTO events.reclamacoes_sqs_events (message_id, receipt_handle, md5_body, body)
  VALUES ($1, $2, $3, $4)`;

type RunCounts = { deletedCount: number; storedCount: number };

async function runTool(
  config: Config,
  sqs: SQSClient,
  pool: pg.Pool,
  recordType: RecordType,
  signal: AbortSignal,
): Promise<RunCounts> {
  const counts = await runIngest({
    config,
    logger: createLogger(config.logLevel),
    sqs,
    pool,
    recordType,
    queueUrl: config.sqs.queueUrl,
    stopWhenEmpty: true,
    signal,
  });

  return { deletedCount: counts.deletedCount, storedCount: counts.storedCount };
}

/**
 * Runs the design the tool replaced. It receives ten messages with long polling, then for each
 * of them at once decodes, INSERTs in its own transaction and calls DeleteMessage. The next
 * receive starts when all ten are done, and the run stops once `messageCount` are deleted.
 */
async function runBaseline(
  config: Config,
  sqs: SQSClient,
  pool: pg.Pool,
  recordType: RecordType,
  messageCount: number,
  signal: AbortSignal,
): Promise<RunCounts> {
  let deletedCount = 0;

  // Each receive takes at least one message, so the count bound is never reached on a full queue.
  for (
    let receives = 0;
    deletedCount < messageCount && receives < messageCount && !signal.aborted;
    receives += 1
  ) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: config.sqs.queueUrl,
        MaxNumberOfMessages: SQS_MAX_BATCH_ENTRIES,
        WaitTimeSeconds: SQS_MAX_WAIT_SECONDS,
        VisibilityTimeout: config.sqs.visibilityTimeoutSeconds,
      }),
    );

    if (Messages.length === 0) {
      break;
    }

    await Promise.all(
      Messages.map(async (message) => {
        await storeOne(pool, message, recordType);
        await sqs.send(
          new DeleteMessageCommand({
            QueueUrl: config.sqs.queueUrl,
            ReceiptHandle: message.ReceiptHandle,
          }),
        );
      }),
    );
    deletedCount += Messages.length;
  }

  return { deletedCount, storedCount: deletedCount };
}

async function storeOne(pool: pg.Pool, message: Message, recordType: RecordType): Promise<void> {
  const record = decodeBody(message.Body ?? '', recordType);

  await pool.query(INSERT_EVENT, [
    message.MessageId,
    message.ReceiptHandle,
    message.MD5OfBody,
    JSON.stringify(record),
  ]);
}

/**
 * Receives and deletes with DeleteMessageBatch in `receiveConcurrency` loops, the tool's
 * receive concurrency, until a receive finds the queue empty.
 */
async function runLimit(config: Config, sqs: SQSClient, signal: AbortSignal): Promise<RunCounts> {
  let deletedCount = 0;

  const receiveAndDelete = async () => {
    while (!signal.aborted) {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: config.sqs.queueUrl,
          MaxNumberOfMessages: SQS_MAX_BATCH_ENTRIES,
          WaitTimeSeconds: 0,
          VisibilityTimeout: config.sqs.visibilityTimeoutSeconds,
          MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
        }),
      );

      if (Messages.length === 0) {
        return;
      }

      await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: config.sqs.queueUrl,
          Entries: Messages.map((message, index) => ({
            Id: String(index),
            ReceiptHandle: message.ReceiptHandle,
          })),
        }),
      );
      deletedCount += Messages.length;
    }
  };

  await Promise.all(Array.from({ length: config.sqs.receiveConcurrency }, receiveAndDelete));

  return { deletedCount, storedCount: 0 };
}

/**
 * Creates the tool's SQS client or, with BENCH_SQS_THREADS=N, one that sends from N worker
 * threads, to measure what moving the SDK's CPU cost off the pipeline's thread gives.
 */
function createClient(config: Config): SQSClient {
  const threadCount = Number(process.env.BENCH_SQS_THREADS ?? 0);

  return threadCount > 0
    ? new ThreadedSqsClient(threadCount).asSqsClient()
    : createSqsClient(config);
}

async function main(): Promise<void> {
  const input = JSON.parse(process.argv[2] ?? '{}') as IngestWorkerInput;
  const config = loadConfig(process.env, '');
  const sqs = createClient(config);
  const connections =
    input.mode === 'baseline' ? BASELINE_CONNECTIONS : config.ingest.copyConnections;
  const pool = createPool(config, connections);
  const recordType = await loadRecordType(config.ingest.schemaPath);
  const stop = new AbortController();
  const runs: Record<IngestMode, () => Promise<RunCounts>> = {
    tool: () => runTool(config, sqs, pool, recordType, stop.signal),
    baseline: () => runBaseline(config, sqs, pool, recordType, input.messageCount, stop.signal),
    limit: () => runLimit(config, sqs, stop.signal),
  };

  process.stdout.write(`${JSON.stringify({ event: 'started' })}\n`);

  const timer =
    input.stopAfterMs === undefined ? undefined : setTimeout(() => stop.abort(), input.stopAfterMs);
  const { result, measurement } = await measure(runs[input.mode]);

  clearTimeout(timer);
  const output: IngestWorkerResult = {
    mode: input.mode,
    ...result,
    receiveConcurrency: input.mode === 'baseline' ? 1 : config.sqs.receiveConcurrency,
    measurement,
  };

  sqs.destroy();
  await pool.end();
  process.stdout.write(`${JSON.stringify(output)}\n`);
}

await main();

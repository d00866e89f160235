import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { RecordType } from '../../src/avro.ts';
import { packagePath } from '../../src/config.ts';
import type { Logger } from '../../src/logger.ts';
import { createSqsSendSink, type SqsBatchEntry } from '../../src/sinks/sqs-send.ts';
import { createComplaintCsvSource, type ComplaintRecord } from '../../src/sources/complaint-csv.ts';
import { readQueueDepth } from '../../test/helpers/aws.ts';

/** SendMessageBatch calls in flight while a queue is filled. */
const PRELOAD_SEND_CONCURRENCY = 16;

/** Pause between two reads of the queue depth while feeding. */
const FEED_POLL_INTERVAL_MS = 50;

/** The field changed on each pass over the input, so that every message body differs. */
const VARIED_FIELD = 'quantidade_total_de_reclamacoes';

export type ComplaintRecords = { records: ComplaintRecord[]; folder: string };

async function readFolder(folder: string, recordType: RecordType, logger: Logger) {
  const names = (await readdir(folder).catch(() => []))
    .filter((name) => name.endsWith('.csv'))
    .sort();
  const records: ComplaintRecord[] = [];

  for (const name of names) {
    for await (const record of createComplaintCsvSource(join(folder, name), {
      recordType,
      logger,
    })) {
      records.push(record as ComplaintRecord);
    }
  }

  return records;
}

/**
 * Reads every complaint CSV in `folder`. When it is missing or holds no rows, falls back to
 * the synthetic sample shipped in samples/reclamacoes and says so on standard error.
 */
export async function loadComplaintRecords(
  folder: URL,
  recordType: RecordType,
  logger: Logger,
): Promise<ComplaintRecords> {
  const path = fileURLToPath(folder);
  const records = await readFolder(path, recordType, logger);

  if (records.length > 0) {
    return { records, folder: path };
  }

  const samplePath = packagePath('samples/reclamacoes');

  process.stderr.write(
    `bench: no complaint CSV rows in ${path}; using the synthetic sample in ${samplePath}\n`,
  );

  return { records: await readFolder(samplePath, recordType, logger), folder: samplePath };
}

/**
 * Yields `count` SendMessageBatch entries: the input records in turn, each encoded as the
 * producer does (base64 of the schemaless Avro binary). On the k-th pass over the input,
 * k is added to `quantidade_total_de_reclamacoes`, so that no two bodies are equal.
 */
export function* complaintEntries(
  records: ComplaintRecord[],
  recordType: RecordType,
  count: number,
): Generator<SqsBatchEntry> {
  for (let index = 0; index < count; index += 1) {
    const record = records[index % records.length] as ComplaintRecord;
    const pass = Math.floor(index / records.length);
    const value = record[VARIED_FIELD] ?? '';
    const varied = /^\d+$/.test(value) ? String(Number(value) + pass) : `${value}${pass}`;
    const body = recordType
      .toBuffer(pass === 0 ? record : { ...record, [VARIED_FIELD]: varied })
      .toString('base64');

    yield { Id: String(index), MessageBody: body };
  }
}

/** Sends every entry to the queue with the tool's own send sink. */
export async function preloadQueue(
  sqs: SQSClient,
  queueUrl: string,
  entries: Iterable<SqsBatchEntry>,
  logger: Logger,
): Promise<number> {
  const sink = createSqsSendSink({ sqs, queueUrl, concurrency: PRELOAD_SEND_CONCURRENCY, logger });

  await pipeline(Readable.from(entries), sink);

  return sink.messageCount;
}

/** Takes up to `count` entries from an iterator. */
export function takeEntries(entries: Iterator<SqsBatchEntry>, count: number): SqsBatchEntry[] {
  const taken: SqsBatchEntry[] = [];

  for (let next = entries.next(); !next.done; next = entries.next()) {
    taken.push(next.value);

    if (taken.length >= count) {
      break;
    }
  }

  return taken;
}

export type FeedOptions = {
  /** Visible messages the queue holds at most; it is topped up once half of them are taken. */
  maxDepth: number;
  logger: Logger;
  /** Stops feeding; the feeder also stops once the entries run out. */
  signal: AbortSignal;
};

/**
 * Sends the remaining entries while a consumer drains the queue, keeping at most `maxDepth`
 * visible messages in it, and returns how many it sent.
 */
export async function feedQueue(
  sqs: SQSClient,
  queueUrl: string,
  entries: Iterator<SqsBatchEntry>,
  options: FeedOptions,
): Promise<number> {
  let sentCount = 0;

  // Each pass sends at least half of maxDepth or waits a poll interval; the caller's signal
  // bounds the time.
  while (!options.signal.aborted) {
    const depth = (await readQueueDepth(sqs, queueUrl)).visible;

    if (depth > options.maxDepth / 2) {
      await sleep(FEED_POLL_INTERVAL_MS);

      continue;
    }

    const batch = takeEntries(entries, options.maxDepth - depth);

    if (batch.length === 0) {
      break;
    }

    sentCount += await preloadQueue(sqs, queueUrl, batch, options.logger);
  }

  return sentCount;
}

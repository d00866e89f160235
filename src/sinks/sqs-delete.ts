import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeleteMessageBatchCommand,
  type BatchResultErrorEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { SQS_MAX_BATCH_ENTRIES } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { ReceivedMessage } from '../sources/sqs.ts';
import type { VisibilityKeeper } from '../sources/sqs-visibility.ts';
import type { StoredBatch } from './postgres-copy.ts';

export type SqsDeleteOptions = {
  sqs: SQSClient;
  queueUrl: string;
  visibility: VisibilityKeeper;
  logger: Logger;
  /** DeleteMessageBatch calls in flight at once for one stored batch. */
  concurrency?: number;
  /** Attempts for an entry that SQS reports as failed, the first included. */
  maxAttempts?: number;
};

/** Running totals of the ingest, as seen by the last stage. */
export type IngestCounts = {
  storedCount: number;
  duplicateCount: number;
  deadLetterCount: number;
  deletedCount: number;
  undeletedCount: number;
};

const DEFAULT_CONCURRENCY = 8;
const DEFAULT_MAX_ATTEMPTS = 4;
const RETRY_DELAY_MS = 100;

/**
 * Sink stage that deletes the messages of each committed batch with DeleteMessageBatch.
 * SQS reports per-entry failures inside a successful response. Those entries are retried, and
 * any that still fail are logged by message id. Nothing is lost then: the message comes back
 * after its visibility timeout, is found already stored, and is deleted again.
 */
export class SqsDeleteSink extends Writable {
  readonly counts: IngestCounts = {
    storedCount: 0,
    duplicateCount: 0,
    deadLetterCount: 0,
    deletedCount: 0,
    undeletedCount: 0,
  };

  readonly #options: SqsDeleteOptions;
  readonly #logger: Logger;

  constructor(options: SqsDeleteOptions) {
    super({ objectMode: true, highWaterMark: 1 });
    this.#options = options;
    this.#logger = options.logger.child({ stage: 'sqs-delete' });
  }

  override _write(batch: StoredBatch, _encoding: string, callback: (error?: Error) => void) {
    this.counts.storedCount += batch.storedCount;
    this.counts.duplicateCount += batch.duplicateCount;
    this.counts.deadLetterCount += batch.deadLetterCount;

    this.#deleteMessages(batch.messages).then(
      () => callback(),
      (error: Error) => callback(error),
    );
  }

  async #deleteMessages(messages: ReceivedMessage[]): Promise<void> {
    const chunks: ReceivedMessage[][] = [];

    for (let start = 0; start < messages.length; start += SQS_MAX_BATCH_ENTRIES) {
      chunks.push(messages.slice(start, start + SQS_MAX_BATCH_ENTRIES));
    }

    const concurrency = this.#options.concurrency ?? DEFAULT_CONCURRENCY;

    for (let start = 0; start < chunks.length; start += concurrency) {
      await Promise.all(chunks.slice(start, start + concurrency).map((chunk) => this.#deleteChunk(chunk)));
    }

    this.#options.visibility.settle(messages.map((message) => message.messageId));
  }

  async #deleteChunk(messages: ReceivedMessage[]): Promise<void> {
    const maxAttempts = this.#options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    let pending = messages;
    let lastFailures: BatchResultErrorEntry[] = [];

    for (let attempt = 1; attempt <= maxAttempts && pending.length > 0; attempt += 1) {
      if (attempt > 1) {
        await sleep(RETRY_DELAY_MS * 2 ** (attempt - 2));
      }

      try {
        lastFailures = await this.#sendDelete(pending);
      } catch (error) {
        // The SDK already retried throttling and 5xx responses; keep the whole chunk pending.
        this.#logger.warn(
          { err: error, messageCount: pending.length, attempt, queueUrl: this.#options.queueUrl },
          'delete failed, retrying',
        );
        lastFailures = pending.map((_, index) => ({ Id: String(index), Code: 'RequestFailed', SenderFault: false }));
      }

      const failedIndexes = new Set(lastFailures.map((entry) => Number(entry.Id)));

      this.counts.deletedCount += pending.length - failedIndexes.size;
      pending = pending.filter((_, index) => failedIndexes.has(index));
    }

    if (pending.length > 0) {
      this.counts.undeletedCount += pending.length;
      this.#logger.warn(
        {
          messageIds: pending.map((message) => message.messageId),
          errorCode: lastFailures[0]?.Code,
          queueUrl: this.#options.queueUrl,
        },
        'messages stored but not deleted; they will be redelivered and skipped as duplicates',
      );
    }
  }

  /** Sends one DeleteMessageBatch and returns the entries SQS reports as failed. */
  async #sendDelete(messages: ReceivedMessage[]): Promise<BatchResultErrorEntry[]> {
    const response = await this.#options.sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: this.#options.queueUrl,
        Entries: messages.map((message, index) => ({
          Id: String(index),
          ReceiptHandle: message.receiptHandle,
        })),
      }),
    );

    return response.Failed ?? [];
  }
}

/** Creates the delete sink stage. */
export function createSqsDeleteSink(options: SqsDeleteOptions): SqsDeleteSink {
  return new SqsDeleteSink(options);
}

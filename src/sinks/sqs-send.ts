import { setTimeout as sleep } from 'node:timers/promises';
import { Writable } from 'node:stream';
import {
  SendMessageBatchCommand,
  type BatchResultErrorEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { SQS_MAX_BATCH_ENTRIES } from '../config.ts';
import type { Logger } from '../logger.ts';

/** One message for SendMessageBatch. `Id` must be unique within a batch. */
export type SqsBatchEntry = { Id: string; MessageBody: string };

/** Options of {@link createSqsSendSink}. */
export type SqsSendSinkOptions = {
  /** Client that sends the batches. Its own retry policy applies to each call. */
  sqs: SQSClient;
  /** URL of the queue that receives the messages. */
  queueUrl: string;
  /** SendMessageBatch calls kept in flight at once, 1 or more. */
  concurrency: number;
  /** Parent logger. The stage logs through a child bound to `{ stage: 'sqs-send' }`. */
  logger: Logger;
  /** Base of the exponential backoff before entries that SQS reported failed are sent again. */
  retryBaseDelayMs?: number;
};

/** An object-mode Writable of {@link SqsBatchEntry} that counts the messages SQS accepted. */
export type SqsSendSink = Writable & { readonly messageCount: number };

/**
 * Maximum total body size of one SendMessageBatch call. Older SQS documentation sets it at
 * 256 KiB (262,144 bytes) and SDK 3.1178 documents 1 MiB, so staying under 256 KiB suits both.
 */
export const SQS_MAX_BATCH_BYTES = 256 * 1024;

/** Attempts per entry that SQS reports failed but not by the sender's fault, the first included. */
export const SEND_MAX_ATTEMPTS = 5;

const DEFAULT_RETRY_BASE_DELAY_MS = 200;

const RETRY_MAX_DELAY_MS = 5_000;

/**
 * One SendMessageBatch call, the SDK's own retries included, is abandoned after this long so
 * that a stalled connection cannot hold the stream forever.
 */
const SEND_BATCH_TIMEOUT_MS = 60_000;

type BatchOutcome = { sentCount: number; failed: BatchResultErrorEntry[] };

/** A batch that SQS did not accept. `entryIds` lists the entries that were not sent. */
export class SqsSendError extends Error {
  override name = 'SqsSendError';

  constructor(
    readonly queueUrl: string,
    readonly entryIds: string[],
    readonly errorCode: string | undefined,
    reason: string,
    options?: { cause: unknown },
  ) {
    super(
      `sending messages to ${queueUrl} failed for entries ${entryIds.join(', ')}: ${reason}`,
      options,
    );
  }
}

/**
 * Creates an object-mode Writable that sends entries to SQS with SendMessageBatch. Entries are
 * grouped into calls of at most {@link SQS_MAX_BATCH_ENTRIES} entries and
 * {@link SQS_MAX_BATCH_BYTES} bytes, and at most `concurrency` calls are in flight. Writes wait
 * while every slot is busy. A 200 response can still report failed entries. Entries failed on
 * the service's side are sent again with exponential backoff, up to {@link SEND_MAX_ATTEMPTS}
 * attempts. A failure by the sender's fault, exhausted attempts or a failed call destroy the
 * stream with {@link SqsSendError}.
 */
export function createSqsSendSink(options: SqsSendSinkOptions): SqsSendSink {
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
    throw new RangeError(
      `invalid concurrency ${options.concurrency}: must be an integer of 1 or more`,
    );
  }

  return new SqsSendWritable(options);
}

class SqsSendWritable extends Writable implements SqsSendSink {
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  readonly #concurrency: number;
  readonly #retryBaseDelayMs: number;
  readonly #logger: Logger;
  readonly #abortController = new AbortController();
  readonly #inFlight = new Set<Promise<void>>();
  #batch: SqsBatchEntry[] = [];
  #batchBytes = 0;
  #messageCount = 0;
  #failure: Error | undefined;

  constructor(options: SqsSendSinkOptions) {
    super({ objectMode: true });
    this.#sqs = options.sqs;
    this.#queueUrl = options.queueUrl;
    this.#concurrency = options.concurrency;
    this.#retryBaseDelayMs = options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS;
    this.#logger = options.logger.child({ stage: 'sqs-send' });
  }

  /** Messages that SQS accepted so far. */
  get messageCount(): number {
    return this.#messageCount;
  }

  override _write(
    entry: SqsBatchEntry,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    const bytes = Buffer.byteLength(entry.MessageBody, 'utf8');

    if (bytes > SQS_MAX_BATCH_BYTES) {
      const reason =
        `the message is ${bytes} bytes, more than the ${SQS_MAX_BATCH_BYTES} a batch can carry`;

      callback(new SqsSendError(this.#queueUrl, [entry.Id], undefined, reason));

      return;
    }

    const isBatchFull =
      this.#batch.length === SQS_MAX_BATCH_ENTRIES ||
      this.#batchBytes + bytes > SQS_MAX_BATCH_BYTES;

    if (isBatchFull) {
      this.#startSend();
    }

    this.#batch.push(entry);
    this.#batchBytes += bytes;

    // Holding the callback while every slot is busy is what applies backpressure upstream.
    this.#waitForFreeSlot().then(() => callback(this.#failure));
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#batch.length > 0) {
      this.#startSend();
    }

    Promise.all(this.#inFlight).then(() => callback(this.#failure));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Sends still running belong to a stream that has already failed or was torn down.
    this.#abortController.abort();

    Promise.all(this.#inFlight).then(() => callback(error));
  }

  async #waitForFreeSlot(): Promise<void> {
    // Each settled send frees one slot, so this runs at most `concurrency` times.
    while (this.#inFlight.size >= this.#concurrency) {
      await Promise.race(this.#inFlight);
    }
  }

  #startSend(): void {
    const entries = this.#batch;

    this.#batch = [];
    this.#batchBytes = 0;

    const send = this.#sendWithRetries(entries).catch((error: unknown) => {
      this.#fail(error as Error);
    });

    this.#inFlight.add(send);
    void send.finally(() => this.#inFlight.delete(send));
  }

  async #sendWithRetries(entries: SqsBatchEntry[]): Promise<void> {
    let pending = entries;

    for (let attempt = 1; attempt <= SEND_MAX_ATTEMPTS; attempt += 1) {
      const startedMs = Date.now();
      const { sentCount, failed } = await this.#sendBatch(pending);

      this.#logger.debug(
        {
          queueUrl: this.#queueUrl,
          messageCount: sentCount,
          bytes: sumBodyBytes(pending),
          durationMs: Date.now() - startedMs,
        },
        'batch sent',
      );

      this.#rejectSenderFaults(failed);

      const failedIds = new Set(failed.map((result) => result.Id));

      pending = pending.filter((entry) => failedIds.has(entry.Id));

      if (pending.length === 0) {
        return;
      }

      if (attempt === SEND_MAX_ATTEMPTS) {
        break;
      }

      this.#logger.warn(
        {
          queueUrl: this.#queueUrl,
          entryIds: pending.map((entry) => entry.Id),
          errorCode: failed[0]?.Code,
          attempt,
        },
        'retrying failed entries',
      );

      await sleep(this.#retryDelayMs(attempt), undefined, {
        signal: this.#abortController.signal,
      });
    }

    throw new SqsSendError(
      this.#queueUrl,
      pending.map((entry) => entry.Id),
      undefined,
      `SQS still reported them failed after ${SEND_MAX_ATTEMPTS} attempts`,
    );
  }

  /** Sends one batch. A 200 response can still list entries that failed. */
  async #sendBatch(entries: SqsBatchEntry[]): Promise<BatchOutcome> {
    const timeoutSignal = AbortSignal.timeout(SEND_BATCH_TIMEOUT_MS);
    const signal = AbortSignal.any([this.#abortController.signal, timeoutSignal]);

    try {
      const response = await this.#sqs.send(
        new SendMessageBatchCommand({ QueueUrl: this.#queueUrl, Entries: entries }),
        { abortSignal: signal },
      );
      const sentCount = response.Successful?.length ?? 0;

      this.#messageCount += sentCount;

      return { sentCount, failed: response.Failed ?? [] };
    } catch (error) {
      const ids = entries.map((entry) => entry.Id);
      const errorCode = error instanceof Error ? error.name : undefined;
      let reason = error instanceof Error ? error.message : String(error);

      if (timeoutSignal.aborted) {
        reason = `no response within ${SEND_BATCH_TIMEOUT_MS} ms, SDK retries included`;
      }

      throw new SqsSendError(this.#queueUrl, ids, errorCode, reason, { cause: error });
    }
  }

  /** Throws when SQS blames the request: sending it again cannot succeed. */
  #rejectSenderFaults(failed: BatchResultErrorEntry[]): void {
    const senderFaults = failed.filter((result) => result.SenderFault === true);

    if (senderFaults.length === 0) {
      return;
    }

    const reasons = senderFaults.map((result) => `${result.Code}: ${result.Message ?? ''}`);

    throw new SqsSendError(
      this.#queueUrl,
      senderFaults.map((result) => result.Id ?? ''),
      senderFaults[0]?.Code,
      `SQS rejected them as the sender's fault (${[...new Set(reasons)].join('; ')})`,
    );
  }

  /** Full-jitter exponential backoff: a random delay up to base × 2^(attempt − 1), capped. */
  #retryDelayMs(attempt: number): number {
    const ceilingMs = Math.min(RETRY_MAX_DELAY_MS, this.#retryBaseDelayMs * 2 ** (attempt - 1));

    return Math.round(Math.random() * ceilingMs);
  }

  #fail(error: Error): void {
    // Our own abort after an earlier failure or a teardown is not a new failure.
    if (this.#abortController.signal.aborted && isAbortError(error)) {
      this.#logger.debug({ queueUrl: this.#queueUrl, err: error }, 'send abandoned');

      return;
    }

    if (this.#failure !== undefined || this.destroyed) {
      // The stream carries only its first error, so this one would otherwise go unreported.
      this.#logger.error({ queueUrl: this.#queueUrl, err: error }, 'another batch failed');

      return;
    }

    this.#failure = error;
    this.destroy(error);
  }
}

function sumBodyBytes(entries: SqsBatchEntry[]): number {
  return entries.reduce((sum, entry) => sum + Buffer.byteLength(entry.MessageBody, 'utf8'), 0);
}

function isAbortError(error: Error): boolean {
  const code = error instanceof SqsSendError ? error.errorCode : error.name;

  return code === 'AbortError';
}

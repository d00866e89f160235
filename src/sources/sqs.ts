import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReceiveMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import { SQS_MAX_BATCH_ENTRIES } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { VisibilityKeeper } from './sqs-visibility.ts';

/** A message as the ingest stages see it. */
export type ReceivedMessage = {
  messageId: string;
  receiptHandle: string;
  body: string;
  /** MD5 of the body as SQS reports it. */
  md5OfBody: string;
  receiveCount: number | null;
  sentAtMs: number | null;
};

export type SqsSourceOptions = {
  sqs: SQSClient;
  queueUrl: string;
  /** ReceiveMessage calls in flight at once. */
  receiveConcurrency: number;
  waitTimeSeconds: number;
  visibilityTimeoutSeconds: number;
  visibility: VisibilityKeeper;
  logger: Logger;
  /** End the stream after a receive finds the queue empty, instead of polling forever. */
  stopWhenEmpty?: boolean;
  /** Largest pause between retries of a failed receive. */
  maxRetryDelayMs?: number;
  /** How long `stop()` lets receives under way finish before it aborts them; 1 s by default. */
  stopAbortDelayMs?: number;
};

/** A receive failed in a way that retrying cannot fix, such as a missing queue. */
export class SqsReceiveError extends Error {
  override name = 'SqsReceiveError';

  constructor(
    readonly queueUrl: string,
    options: { cause: unknown },
  ) {
    const reason = options.cause instanceof Error ? options.cause.message : String(options.cause);

    super(`receiving from ${queueUrl} failed: ${reason}; check SQS_QUEUE_URL and permissions`, options);
  }
}

/** Errors that a retry cannot fix; any other receive error is retried with backoff. */
const PERMANENT_RECEIVE_ERRORS = new Set([
  'QueueDoesNotExist',
  'AWS.SimpleQueueService.NonExistentQueue',
  'AccessDenied',
  'AccessDeniedException',
  'InvalidAddress',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'SignatureDoesNotMatch',
]);

const DEFAULT_MAX_RETRY_DELAY_MS = 30_000;
const DEFAULT_STOP_ABORT_DELAY_MS = 1000;
const FIRST_RETRY_DELAY_MS = 200;

/**
 * Readable stage that long-polls SQS with several receives in flight. Each loop waits while the
 * stream's buffer is full, so a slow downstream stage slows the receives instead of filling
 * memory. `stop()` ends the stream: no receive starts and waiting long polls are aborted.
 */
export class SqsSource extends Readable {
  readonly #options: SqsSourceOptions;
  readonly #abort = new AbortController();
  readonly #logger: Logger;
  #demand: PromiseWithResolversLike | undefined;
  #runningLoops = 0;
  #isStarted = false;
  #isStopping = false;

  constructor(options: SqsSourceOptions) {
    super({ objectMode: true, highWaterMark: options.receiveConcurrency * SQS_MAX_BATCH_ENTRIES });
    this.#options = options;
    this.#logger = options.logger.child({ stage: 'sqs-source' });
  }

  get isStopping(): boolean {
    return this.#isStopping;
  }

  /**
   * Stops receiving; the stream ends once every receive loop has returned. A receive under way
   * may already have been answered, and aborting it would leave its messages invisible until
   * their timeout, so each gets `stopAbortDelayMs` to deliver before waiting polls are aborted.
   */
  stop(): void {
    if (this.#isStopping) {
      return;
    }

    this.#isStopping = true;
    this.#logger.info({ queueUrl: this.#options.queueUrl }, 'receiving stopped');
    this.#demand?.resolve();

    const delayMs = this.#options.stopAbortDelayMs ?? DEFAULT_STOP_ABORT_DELAY_MS;

    setTimeout(() => this.#abort.abort(), delayMs).unref();
  }

  override _read(): void {
    if (!this.#isStarted) {
      this.#isStarted = true;
      this.#startLoops();
    }

    this.#demand?.resolve();
    this.#demand = undefined;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#abort.abort();
    this.#demand?.resolve();
    callback(error);
  }

  #startLoops(): void {
    this.#logger.info(
      { queueUrl: this.#options.queueUrl, receiveConcurrency: this.#options.receiveConcurrency },
      'receiving started',
    );

    for (let index = 0; index < this.#options.receiveConcurrency; index += 1) {
      this.#runningLoops += 1;
      void this.#receiveLoop().finally(() => {
        this.#runningLoops -= 1;

        if (this.#runningLoops === 0 && !this.destroyed) {
          this.push(null);
        }
      });
    }
  }

  async #receiveLoop(): Promise<void> {
    let failureCount = 0;

    while (!this.#isStopping && !this.destroyed) {
      await this.#waitForDemand();

      if (this.#isStopping) {
        return;
      }

      try {
        const messages = await this.#receiveBatch();

        failureCount = 0;

        if (messages.length === 0 && this.#options.stopWhenEmpty) {
          return;
        }

        this.#pushMessages(messages);
      } catch (error) {
        if (this.#abort.signal.aborted) {
          return;
        }

        failureCount += 1;

        if (!this.#handleReceiveError(error, failureCount)) {
          return;
        }

        await this.#backOff(failureCount);
      }
    }
  }

  async #receiveBatch(): Promise<ReceivedMessage[]> {
    const response = await this.#options.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: this.#options.queueUrl,
        MaxNumberOfMessages: SQS_MAX_BATCH_ENTRIES,
        WaitTimeSeconds: this.#options.waitTimeSeconds,
        VisibilityTimeout: this.#options.visibilityTimeoutSeconds,
        MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
      }),
      { abortSignal: this.#abort.signal },
    );

    return (response.Messages ?? []).map(toReceivedMessage);
  }

  #pushMessages(messages: ReceivedMessage[]): void {
    for (const message of messages) {
      this.#options.visibility.track(message.messageId, message.receiptHandle);
    }

    // A stream destroyed during the receive drops these; they reappear after the timeout.
    if (this.destroyed) {
      return;
    }

    for (const message of messages) {
      this.push(message);
    }

    if (messages.length > 0) {
      this.#logger.debug({ messageCount: messages.length, phase: 'receiving' }, 'batch received');
    }
  }

  /** Returns whether the loop should go on after this error. */
  #handleReceiveError(error: unknown, failureCount: number): boolean {
    const errorCode = (error as { name?: string }).name ?? 'Unknown';

    if (PERMANENT_RECEIVE_ERRORS.has(errorCode)) {
      this.destroy(new SqsReceiveError(this.#options.queueUrl, { cause: error }));

      return false;
    }

    this.#logger.warn(
      { err: error, errorCode, queueUrl: this.#options.queueUrl, attempt: failureCount },
      'receive failed, retrying',
    );

    return true;
  }

  async #backOff(failureCount: number): Promise<void> {
    const maxDelayMs = this.#options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
    const cappedMs = Math.min(maxDelayMs, FIRST_RETRY_DELAY_MS * 2 ** (failureCount - 1));

    // Full jitter keeps several consumers from retrying in step.
    await sleep(Math.random() * cappedMs, undefined, { signal: this.#abort.signal }).catch(
      () => {},
    );
  }

  /** Resolves when the stream wants more data or stops. */
  async #waitForDemand(): Promise<void> {
    while (
      this.readableLength >= this.readableHighWaterMark &&
      !this.#isStopping &&
      !this.destroyed
    ) {
      this.#demand ??= createDeferred();
      await this.#demand.promise;
    }
  }
}

type PromiseWithResolversLike = { promise: Promise<void>; resolve: () => void };

function createDeferred(): PromiseWithResolversLike {
  let resolve = () => {};
  const promise = new Promise<void>((settle) => {
    resolve = settle;
  });

  return { promise, resolve };
}

function toReceivedMessage(message: Message): ReceivedMessage {
  const attributes = message.Attributes ?? {};
  const receiveCount = Number(attributes.ApproximateReceiveCount);
  const sentAtMs = Number(attributes.SentTimestamp);
  const body = message.Body ?? '';

  return {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body,
    md5OfBody: message.MD5OfBody ?? createHash('md5').update(body, 'utf8').digest('hex'),
    receiveCount: Number.isFinite(receiveCount) ? receiveCount : null,
    sentAtMs: Number.isFinite(sentAtMs) ? sentAtMs : null,
  };
}

/** Creates the SQS source stage. */
export function createSqsSource(options: SqsSourceOptions): SqsSource {
  return new SqsSource(options);
}

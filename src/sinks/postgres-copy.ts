import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from '../logger.ts';
import { escapeCopyText } from '../postgres.ts';
import type { ReceivedMessage } from '../sources/sqs.ts';
import type { DeadLetterReason, DecodedMessage } from '../transforms/avro-decode.ts';
import { classifyFailure } from './postgres-errors.ts';

export type PostgresCopyOptions = {
  pool: pg.Pool;
  /** Batches written at once; the pool needs at least as many connections. */
  concurrency: number;
  logger: Logger;
  /**
   * Aborting it fails the stream: retries end, and a write in flight is cancelled by closing
   * its connection, so PostgreSQL rolls its transaction back. Destroying the stream does the same.
   */
  signal?: AbortSignal;
  /** Largest pause between retries while the database is unreachable. */
  maxRetryDelayMs?: number;
};

/** The outcome of one committed batch; every message in it may now be deleted from SQS. */
export type StoredBatch = {
  messages: ReceivedMessage[];
  storedCount: number;
  duplicateCount: number;
  deadLetterCount: number;
};

/** A batch could not be committed and retrying will not help. */
export class PostgresCopyError extends Error {
  override name = 'PostgresCopyError';

  constructor(
    readonly table: string,
    readonly messageIds: string[],
    options: { cause: unknown },
  ) {
    const reason = options.cause instanceof Error ? options.cause.message : String(options.cause);

    super(`writing ${messageIds.length} messages to ${table} failed: ${reason}`, options);
  }
}

const EVENTS_TABLE = 'events.reclamacoes_sqs_events';
const FIRST_RETRY_DELAY_MS = 200;
const DEFAULT_MAX_RETRY_DELAY_MS = 30_000;

const STAGING_DDL = `
  CREATE TEMP TABLE IF NOT EXISTS reclamacoes_staging (
    message_id text, receipt_handle text, md5_body text, body jsonb
  ) ON COMMIT DELETE ROWS`;

const COPY_STAGING =
  'COPY pg_temp.reclamacoes_staging (message_id, receipt_handle, md5_body, body) FROM STDIN';

// DISTINCT ON keeps one row when a batch contains two deliveries of the same message.
const INSERT_EVENTS = `
  INSERT INTO ${EVENTS_TABLE} (message_id, receipt_handle, md5_body, body)
  SELECT DISTINCT ON (message_id) message_id, receipt_handle, md5_body, body
  FROM pg_temp.reclamacoes_staging
  ON CONFLICT (message_id) DO NOTHING`;

const INSERT_DEAD_LETTERS = `
  INSERT INTO events.dead_letters
    (message_id, body, md5_body, error_class, error_message, receive_count, sent_at)
  SELECT message_id, body, md5_body, error_class, error_message, receive_count,
    to_timestamp(sent_at_ms / 1000.0)
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[])
    AS t(message_id, body, md5_body, error_class, error_message, receive_count, sent_at_ms)
  ON CONFLICT (message_id) DO NOTHING`;


function encodeCopyRows(items: DecodedMessage[]): string {
  let payload = '';

  for (const { message, record } of items) {
    payload +=
      `${escapeCopyText(message.messageId)}\t${escapeCopyText(message.receiptHandle)}\t` +
      `${escapeCopyText(message.md5OfBody)}\t${escapeCopyText(JSON.stringify(record))}\n`;
  }

  return payload;
}

/**
 * Stage that writes batches of decoded messages to PostgreSQL, each in one transaction: good
 * records go through COPY into a temporary table and on into the events table (a message
 * already stored is skipped), dead letters into `events.dead_letters`. It emits a StoredBatch
 * after the commit, and only then may the messages be deleted from SQS.
 *
 * A row the database rejects is isolated by splitting its batch until only it fails, and
 * is dead-lettered alone. While the database is unreachable the batch is retried with capped
 * exponential backoff and jitter; no later batch starts meanwhile beyond `concurrency`.
 */
export class PostgresCopySink extends Transform {
  readonly #options: PostgresCopyOptions;
  readonly #logger: Logger;
  readonly #preparedClients = new WeakSet<pg.PoolClient>();
  /** Aborted by `options.signal` or by destroy; cancels retries and writes in flight. */
  readonly #cancel = new AbortController();
  #inFlight = 0;
  #waitingCallback: TransformCallback | undefined;
  #flushCallback: TransformCallback | undefined;

  constructor(options: PostgresCopyOptions) {
    super({ objectMode: true, readableHighWaterMark: options.concurrency, writableHighWaterMark: 1 });
    this.#options = options;
    this.#logger = options.logger.child({ stage: 'postgres-copy' });
    options.signal?.addEventListener('abort', () => this.#cancel.abort(), { once: true });

    if (options.signal?.aborted) {
      this.#cancel.abort();
    }

    // A new connection can fail in the same socket read that completes its checkout, before
    // #commit listens on it. node-postgres would then emit 'error' with no listener and crash.
    options.pool.on('connect', listenForErrors);
  }

  override _transform(batch: DecodedMessage[], _encoding: string, callback: TransformCallback) {
    this.#inFlight += 1;

    void this.#storeBatch(batch)
      .then((stored) => this.push(stored))
      .catch((error: unknown) => this.destroy(error as Error))
      .finally(() => this.#onBatchSettled());

    if (this.#inFlight < this.#options.concurrency) {
      callback();
    } else {
      this.#waitingCallback = callback;
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.#inFlight === 0) {
      callback();
    } else {
      this.#flushCallback = callback;
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#cancel.abort();
    this.#options.pool.off('connect', listenForErrors);
    callback(error);
  }

  #onBatchSettled(): void {
    this.#inFlight -= 1;

    const waiting = this.#waitingCallback;

    this.#waitingCallback = undefined;
    waiting?.();

    if (this.#inFlight === 0 && this.#flushCallback) {
      this.#flushCallback();
    }
  }

  async #storeBatch(batch: DecodedMessage[]): Promise<StoredBatch> {
    const startedAtMs = Date.now();
    const counts = await this.#storeIsolatingBadRows(batch);
    const stored: StoredBatch = { messages: batch.map((item) => item.message), ...counts };

    this.#logger.debug(
      {
        table: EVENTS_TABLE,
        messageCount: batch.length,
        rowCount: counts.storedCount,
        duplicateCount: counts.duplicateCount,
        deadLetterCount: counts.deadLetterCount,
        durationMs: Date.now() - startedAtMs,
        phase: 'processing',
      },
      'batch committed',
    );

    return stored;
  }

  async #storeIsolatingBadRows(
    items: DecodedMessage[],
  ): Promise<Omit<StoredBatch, 'messages'>> {
    try {
      return await this.#withRetry(items, () => this.#commit(items));
    } catch (error) {
      if (classifyFailure(error) !== 'data' || error instanceof PostgresCopyError) {
        throw error;
      }

      if (items.length === 1 && items[0]) {
        const rejected = toDeadLetter(items[0], error as Error);

        this.#logger.warn(
          { messageIds: [rejected.message.messageId], errorCode: 'rejected_by_database' },
          'row rejected by the database, dead-lettered',
        );

        return await this.#withRetry(items, () => this.#commit([rejected])).catch((cause) => {
          throw new PostgresCopyError('events.dead_letters', [rejected.message.messageId], { cause });
        });
      }

      const middle = Math.ceil(items.length / 2);
      const left = await this.#storeIsolatingBadRows(items.slice(0, middle));
      const right = await this.#storeIsolatingBadRows(items.slice(middle));

      return {
        storedCount: left.storedCount + right.storedCount,
        duplicateCount: left.duplicateCount + right.duplicateCount,
        deadLetterCount: left.deadLetterCount + right.deadLetterCount,
      };
    }
  }

  /** Runs one commit, retrying while the failure is transient; data errors are rethrown. */
  async #withRetry<T>(items: DecodedMessage[], attempt: () => Promise<T>): Promise<T> {
    for (let failureCount = 1; ; failureCount += 1) {
      try {
        return await attempt();
      } catch (error) {
        const kind = classifyFailure(error);

        if (kind === 'data') {
          throw error;
        }

        const messageIds = items.map((item) => item.message.messageId);

        if (kind === 'permanent' || this.#cancel.signal.aborted) {
          throw new PostgresCopyError(EVENTS_TABLE, messageIds, { cause: error });
        }

        await this.#backOff(error, failureCount, items.length);
      }
    }
  }

  async #backOff(error: unknown, failureCount: number, messageCount: number): Promise<void> {
    const maxDelayMs = this.#options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
    const delayMs = Math.random() * Math.min(maxDelayMs, FIRST_RETRY_DELAY_MS * 2 ** failureCount);

    this.#logger.warn(
      { err: error, messageCount, attempt: failureCount, delayMs: Math.round(delayMs) },
      'database write failed, retrying',
    );

    await sleep(delayMs, undefined, { signal: this.#cancel.signal }).catch(() => {});
  }

  async #commit(items: DecodedMessage[]): Promise<Omit<StoredBatch, 'messages'>> {
    const records = items.filter((item) => item.record !== undefined);
    const deadLetters = items.filter((item) => item.deadLetter !== undefined);
    this.#cancel.signal.throwIfAborted();

    const client = await this.#options.pool.connect();
    let releaseError: Error | undefined;
    // node-postgres reports a lost connection twice: the statement fails, and the client emits
    // 'error', which would crash the process without a listener while the client is checked out.
    const onConnectionError = (error: Error) => {
      releaseError ??= error;
    };
    // Closing the connection fails the statement in flight and PostgreSQL rolls back.
    const cancel = () => void client.end();

    client.on('error', onConnectionError);
    this.#cancel.signal.addEventListener('abort', cancel, { once: true });

    try {
      // The stream may have been destroyed while this connection was being opened.
      this.#cancel.signal.throwIfAborted();

      // Outside the transaction, so a rollback cannot undo the table that later batches expect.
      await this.#prepareStaging(client);
      await client.query('BEGIN');

      let storedCount = 0;

      if (records.length > 0) {
        const copyStream = client.query(copyFrom(COPY_STAGING));

        await pipeline(Readable.from([encodeCopyRows(records)]), copyStream);
        storedCount = (await client.query(INSERT_EVENTS)).rowCount ?? 0;
      }

      const deadLetterCount = await insertDeadLetters(client, deadLetters);

      await client.query('COMMIT');

      return { storedCount, duplicateCount: records.length - storedCount, deadLetterCount };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});

      // A connection that failed for any reason but bad data is not reused.
      if (classifyFailure(error) !== 'data') {
        releaseError = error as Error;
      }

      throw error;
    } finally {
      this.#cancel.signal.removeEventListener('abort', cancel);
      client.off('error', onConnectionError);
      client.release(releaseError);
    }
  }

  async #prepareStaging(client: pg.PoolClient): Promise<void> {
    if (!this.#preparedClients.has(client)) {
      await client.query(STAGING_DDL);
      this.#preparedClients.add(client);
    }
  }
}

/** Keeps a connection's 'error' event from crashing the process. The failed query reports it. */
function listenForErrors(client: pg.PoolClient): void {
  client.on('error', ignoreError);
}

function ignoreError(): void {}

async function insertDeadLetters(client: pg.PoolClient, items: DecodedMessage[]): Promise<number> {
  if (items.length === 0) {
    return 0;
  }

  const columns = deadLetterColumns(items);
  const result = await client.query(INSERT_DEAD_LETTERS, columns);

  return result.rowCount ?? 0;
}

function deadLetterColumns(items: DecodedMessage[]): unknown[][] {
  const columns: unknown[][] = [[], [], [], [], [], [], []];

  for (const { message, deadLetter } of items) {
    const reason = deadLetter as DeadLetterReason;
    const hasNul = message.body.includes('\u0000');

    // NOTE: PostgreSQL text cannot hold NUL, so a body with one is stored with each NUL
    // written as the six characters \u0000; the error message says so.
    const body = hasNul ? message.body.replaceAll('\u0000', '\\u0000') : message.body;
    const errorMessage = hasNul
      ? `${reason.errorMessage} (NUL characters of the body stored as \\u0000)`
      : reason.errorMessage;

    columns[0]?.push(message.messageId);
    columns[1]?.push(body);
    columns[2]?.push(message.md5OfBody);
    columns[3]?.push(reason.errorClass);
    columns[4]?.push(errorMessage);
    columns[5]?.push(message.receiveCount);
    columns[6]?.push(message.sentAtMs);
  }

  return columns;
}

function toDeadLetter(item: DecodedMessage, error: Error): DecodedMessage {
  const code = (error as { code?: string }).code ?? 'unknown';

  return {
    message: item.message,
    deadLetter: {
      errorClass: 'rejected_by_database',
      errorMessage: `PostgreSQL rejected the row (SQLSTATE ${code}): ${error.message}`,
    },
  };
}

/** Creates the COPY sink stage. */
export function createPostgresCopySink(options: PostgresCopyOptions): PostgresCopySink {
  return new PostgresCopySink(options);
}

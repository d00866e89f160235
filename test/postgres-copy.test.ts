import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { after, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createLogger } from '../src/logger.ts';
import { connectionOptions, escapeCopyText } from '../src/postgres.ts';
import {
  createPostgresCopySink,
  PostgresCopyError,
  type StoredBatch,
} from '../src/sinks/postgres-copy.ts';
import type { ReceivedMessage } from '../src/sources/sqs.ts';
import type { DecodedMessage } from '../src/transforms/avro-decode.ts';
import { captureLogs } from './helpers/logs.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';

const TEST_TIMEOUT_MS = 30_000;

/** Retry pauses stay short so that outage tests take seconds. */
const MAX_RETRY_DELAY_MS = 300;

/** A value that the CHECK constraint and the trigger of the rejection tests reject. */
const REJECTED_NAME = 'REJECTED BY THE DATABASE';

const silentLogger = createLogger('silent');

function receivedMessage(body = 'AAAA'): ReceivedMessage {
  return {
    messageId: randomUUID(),
    receiptHandle: `handle-${randomUUID()}`,
    body,
    md5OfBody: 'd41d8cd98f00b204e9800998ecf8427e',
    receiveCount: 1,
    sentAtMs: Date.now(),
  };
}

function recordItem(fields: Record<string, string | null> = {}): DecodedMessage {
  return {
    message: receivedMessage(),
    record: { ano: '2021', instituicao_financeira: 'BANCO TESTE', cnpj_if: null, ...fields },
  };
}

function deadLetterItem(body = 'not base64!'): DecodedMessage {
  return {
    message: receivedMessage(body),
    deadLetter: { errorClass: 'invalid_base64', errorMessage: 'the message body is not valid' },
  };
}

/** Collects what a stage emits. */
function collector(): { stream: Writable; batches: StoredBatch[] } {
  const batches: StoredBatch[] = [];
  const stream = new Writable({
    objectMode: true,
    write(batch: StoredBatch, _encoding, callback) {
      batches.push(batch);
      callback();
    },
  });

  return { stream, batches };
}

describe('PostgresCopySink', { timeout: TEST_TIMEOUT_MS }, () => {
  let database: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    database = await createTestDatabase();
    pool = new pg.Pool({ ...connectionOptions(database.config), max: 4 });
    // The pool reports a terminated idle connection here and replaces it.
    pool.on('error', () => {});
  });

  after(async () => {
    await pool.end();
    await database.drop();
  });

  beforeEach(async () => {
    await database.pool.query('TRUNCATE events.reclamacoes_sqs_events, events.dead_letters');
  });

  async function writeBatches(batches: DecodedMessage[][], concurrency = 2) {
    const output = collector();
    const logs = captureLogs();

    await pipeline(
      Readable.from(batches),
      createPostgresCopySink({
        pool,
        concurrency,
        logger: logs.logger,
        maxRetryDelayMs: MAX_RETRY_DELAY_MS,
      }),
      output.stream,
    );

    return { batches: output.batches, logs };
  }

  async function storedIds(table: string): Promise<string[]> {
    const { rows } = await database.pool.query<{ message_id: string }>(
      `SELECT message_id FROM ${table} ORDER BY message_id`,
    );

    return rows.map((row) => row.message_id);
  }

  async function countStored(): Promise<number> {
    return (await storedIds('events.reclamacoes_sqs_events')).length;
  }

  function sortedIds(items: DecodedMessage[]): string[] {
    return items.map((item) => item.message.messageId).sort();
  }

  test('commits records and dead letters of a batch together', async () => {
    const records = [recordItem(), recordItem(), recordItem()];
    const deadLetters = [deadLetterItem(), deadLetterItem()];

    const { batches } = await writeBatches([[...records, ...deadLetters]]);

    assert.equal(batches.length, 1);
    assert.equal(batches[0]?.storedCount, 3);
    assert.equal(batches[0]?.deadLetterCount, 2);
    assert.equal(batches[0]?.duplicateCount, 0);
    assert.equal(batches[0]?.messages.length, 5);
    assert.deepEqual(await storedIds('events.reclamacoes_sqs_events'), sortedIds(records));
    assert.deepEqual(await storedIds('events.dead_letters'), sortedIds(deadLetters));
  });

  test('round-trips tabs, newlines, CR and backslashes byte for byte', async () => {
    const awkward = [
      'tab\there',
      'line\nfeed',
      'carriage\rreturn',
      'back\\slash',
      '\\N',
      '\\.',
      '\\.\n',
      'end with backslash\\',
      '"quoted" \\t literal',
      'mixed\t\n\r\\\\ all',
      'ç ã º – 😀',
    ];
    const items = awkward.map((value) => recordItem({ instituicao_financeira: value }));

    await writeBatches([items]);

    for (const item of items) {
      const { rows } = await database.pool.query<{ name: string }>(
        `SELECT body->>'instituicao_financeira' AS name
         FROM events.reclamacoes_sqs_events WHERE message_id = $1`,
        [item.message.messageId],
      );

      assert.equal(rows[0]?.name, item.record?.instituicao_financeira);
    }
  });

  test('escapeCopyText escapes exactly the COPY text specials', () => {
    assert.equal(escapeCopyText('a\tb\nc\rd\\e'), 'a\\tb\\nc\\rd\\\\e');
    assert.equal(escapeCopyText('plain'), 'plain');
    assert.equal(escapeCopyText('\\N'), '\\\\N');
  });

  test('delivery of a stored message counts as a duplicate', async () => {
    const item = recordItem({ instituicao_financeira: 'first delivery' });
    const redelivered: DecodedMessage = {
      message: { ...item.message, receiptHandle: 'a newer handle' },
      record: { ...item.record },
    };

    await writeBatches([[item]]);

    const { batches } = await writeBatches([[redelivered, redelivered]]);
    const { rows } = await database.pool.query(
      'SELECT receipt_handle FROM events.reclamacoes_sqs_events',
    );

    assert.equal(batches[0]?.storedCount, 0);
    assert.equal(batches[0]?.duplicateCount, 2);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].receipt_handle, item.message.receiptHandle);
  });

  test('dead letter with NUL in its body is stored with an escape', async () => {
    const item = deadLetterItem('before\u0000after');

    await writeBatches([[item]]);

    const { rows } = await database.pool.query(
      'SELECT body, error_message FROM events.dead_letters',
    );

    assert.equal(rows[0].body, 'before\\u0000after');
    assert.match(rows[0].error_message, /stored as \\u0000/);
  });

  describe('a row the database rejects', () => {
    async function assertOnlyRejectedDeadLettered(constraint: string) {
      const items = Array.from({ length: 13 }, (_, index) =>
        recordItem({ instituicao_financeira: `BANCO ${index}` }),
      );
      const rejected = recordItem({ instituicao_financeira: REJECTED_NAME });
      const deadLetter = deadLetterItem();
      const batch = [...items.slice(0, 7), rejected, deadLetter, ...items.slice(7)];

      const { batches, logs } = await writeBatches([batch]);
      const { rows } = await database.pool.query(
        'SELECT message_id, error_class, error_message FROM events.dead_letters ORDER BY error_class',
      );
      const warnings = logs.withMessage('row rejected by the database, dead-lettered');

      assert.equal(batches.length, 1);
      assert.equal(batches[0]?.messages.length, batch.length);
      assert.equal(batches[0]?.storedCount, items.length);
      assert.equal(batches[0]?.deadLetterCount, 2);
      assert.deepEqual(await storedIds('events.reclamacoes_sqs_events'), sortedIds(items));
      assert.equal(rows.length, 2);
      assert.equal(rows[0].error_class, 'invalid_base64');
      assert.equal(rows[1].error_class, 'rejected_by_database');
      assert.equal(rows[1].message_id, rejected.message.messageId);
      assert.match(rows[1].error_message, new RegExp(constraint));
      assert.equal(warnings.length, 1);
      assert.deepEqual(warnings[0]?.messageIds, [rejected.message.messageId]);
    }

    test('is isolated by a CHECK constraint', async () => {
      await database.pool.query(
        `ALTER TABLE events.reclamacoes_sqs_events ADD CONSTRAINT test_rejects_one_name
         CHECK (body->>'instituicao_financeira' IS DISTINCT FROM '${REJECTED_NAME}')`,
      );

      try {
        await assertOnlyRejectedDeadLettered('test_rejects_one_name');
      } finally {
        await database.pool.query(
          'ALTER TABLE events.reclamacoes_sqs_events DROP CONSTRAINT test_rejects_one_name',
        );
      }
    });

    test('is isolated when a trigger raises an exception', async () => {
      await database.pool.query(`
        CREATE FUNCTION events.test_reject_one_name() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.body->>'instituicao_financeira' = '${REJECTED_NAME}' THEN
            RAISE EXCEPTION 'test trigger rejects this institution';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER test_reject_one_name BEFORE INSERT ON events.reclamacoes_sqs_events
          FOR EACH ROW EXECUTE FUNCTION events.test_reject_one_name();`);

      try {
        await assertOnlyRejectedDeadLettered('test trigger rejects this institution');
      } finally {
        await database.pool.query(`
          DROP TRIGGER test_reject_one_name ON events.reclamacoes_sqs_events;
          DROP FUNCTION events.test_reject_one_name();`);
      }
    });
  });

  /** Locks the events table in a transaction of its own and returns a function that unlocks. */
  async function lockEventsTable(): Promise<() => Promise<void>> {
    const locker = await database.pool.connect();

    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events.reclamacoes_sqs_events IN ACCESS EXCLUSIVE MODE');

    return async () => {
      await locker.query('COMMIT');
      locker.release();
    };
  }

  /** Starts writing one batch through a sink of concurrency 1 with logs captured. */
  function startWriting(items: DecodedMessage[], writerPool: pg.Pool) {
    const output = collector();
    const logs = captureLogs();
    const written = pipeline(
      Readable.from([items]),
      createPostgresCopySink({
        pool: writerPool,
        concurrency: 1,
        logger: logs.logger,
        maxRetryDelayMs: MAX_RETRY_DELAY_MS,
      }),
      output.stream,
    );

    return { written, output, logs };
  }

  test('batch survives pg_terminate_backend of its connection', async () => {
    const items = Array.from({ length: 20 }, () => recordItem());
    // The lock holds the batch's INSERT, so its backend can be found and terminated mid-write.
    const unlock = await lockEventsTable();
    const { written, output, logs } = startWriting(items, pool);

    const terminated = await terminateWaitingBackends();

    await unlock();
    await written;

    const retries = logs.withMessage('database write failed, retrying');

    assert.equal(terminated, 1);
    assert.equal(retries.length, 1);
    assert.equal(retries[0]?.attempt, 1);
    assert.equal(output.batches[0]?.storedCount, items.length);
    assert.deepEqual(await storedIds('events.reclamacoes_sqs_events'), sortedIds(items));
  });

  test('batch is retried when lock_timeout expires', async () => {
    const impatientPool = new pg.Pool({
      ...connectionOptions(database.config),
      options: '-c lock_timeout=200',
      max: 1,
    });
    const items = Array.from({ length: 5 }, () => recordItem());
    const unlock = await lockEventsTable();
    const { written, output, logs } = startWriting(items, impatientPool);

    await sleep(1000);
    await unlock();
    await written;
    await impatientPool.end();

    const retries = logs.withMessage('database write failed, retrying');

    assert.ok(retries.length >= 1, `expected a retry, saw ${retries.length}`);
    assert.equal((retries[0]?.err as { code?: string }).code, '55P03');
    assert.equal(output.batches[0]?.storedCount, items.length);
    assert.deepEqual(await storedIds('events.reclamacoes_sqs_events'), sortedIds(items));
  });

  /**
   * Waits until a backend waits for a lock, then terminates it and returns the count. It queries
   * outside the locking transaction, which would see pg_stat_activity frozen at its start.
   */
  async function terminateWaitingBackends(): Promise<number> {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const { rows } = await database.pool.query<{ terminated: boolean }>(
        `SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND wait_event_type = 'Lock'`,
      );

      if (rows.length > 0) {
        return rows.filter((row) => row.terminated).length;
      }

      await sleep(50);
    }

    return 0;
  }

  describe('stream contract', () => {
    test('emits finish, end and close once under pipeline()', async () => {
      const sink = createPostgresCopySink({ pool, concurrency: 2, logger: silentLogger });
      const counts = { finish: 0, end: 0, close: 0, error: 0 };

      for (const name of ['finish', 'end', 'close', 'error'] as const) {
        sink.on(name, () => {
          counts[name] += 1;
        });
      }

      await pipeline(
        Readable.from([[recordItem()], [recordItem()], [recordItem()]]),
        sink,
        collector().stream,
      );

      assert.deepEqual(counts, { finish: 1, end: 1, close: 1, error: 0 });
    });

    test('stops taking batches while stored ones wait downstream', async () => {
      const concurrency = 2;
      const sink = createPostgresCopySink({ pool, concurrency, logger: silentLogger });
      let readCount = 0;
      const source = Readable.from(
        (function* () {
          for (let index = 0; index < 50; index += 1) {
            readCount += 1;
            yield [recordItem()];
          }
        })(),
      );

      // Nothing reads the stored batches, as when the delete stage is slower than COPY.
      source.pipe(sink);

      for (let poll = 0; poll < 50 && (await countStored()) < 2 * concurrency; poll += 1) {
        await sleep(100);
      }

      await sleep(500);

      const storedCount = await countStored();

      source.destroy();
      sink.destroy();

      // Stored batches fill the readable buffer, two more are in flight or buffered on the way
      // in, and the source reads ahead a little: far fewer than the 50 batches on offer.
      assert.ok(storedCount <= 2 * concurrency, `${storedCount} batches stored`);
      assert.ok(readCount < 25, `the source was read ${readCount} times`);
    });

    test('emits error once and stops when a batch fails for good', async () => {
      const brokenPool = new pg.Pool({
        ...connectionOptions(database.config),
        database: `missing_${randomUUID().replaceAll('-', '')}`,
        max: 1,
      });
      const sink = createPostgresCopySink({ pool: brokenPool, concurrency: 1, logger: silentLogger });
      const errors: Error[] = [];
      const output = collector();

      sink.on('error', (error) => errors.push(error));

      await assert.rejects(
        pipeline(Readable.from([[recordItem()], [recordItem()]]), sink, output.stream),
        (error: Error) => {
          assert.ok(error instanceof PostgresCopyError);
          assert.equal(error.messageIds.length, 1);
          assert.equal((error.cause as { code?: string }).code, '3D000');

          return true;
        },
      );
      await brokenPool.end();

      assert.equal(errors.length, 1);
      assert.equal(output.batches.length, 0);
    });

    test('works with finished() and reports the outcome once', async () => {
      const sink = createPostgresCopySink({ pool, concurrency: 1, logger: silentLogger });
      const output = collector();

      sink.pipe(output.stream);
      sink.write([recordItem()]);
      sink.end();
      await finished(output.stream);

      assert.equal(output.batches.length, 1);
      assert.equal(output.batches[0]?.storedCount, 1);
    });

    test('destroy before the first write takes no connection', async () => {
      const countingPool = new pg.Pool({ ...connectionOptions(database.config), max: 1 });
      const sink = createPostgresCopySink({ pool: countingPool, concurrency: 1, logger: silentLogger });
      let closeCount = 0;

      sink.on('close', () => {
        closeCount += 1;
      });
      sink.destroy();
      await sleep(20);

      assert.equal(closeCount, 1);
      assert.equal(sink.destroyed, true);
      assert.equal(countingPool.totalCount, 0);
      await countingPool.end();
    });

    test('destroy mid-write rolls the batch back', async () => {
      const sink = createPostgresCopySink({ pool, concurrency: 1, logger: silentLogger });
      const errors: Error[] = [];

      sink.on('error', (error) => errors.push(error));

      const unlock = await lockEventsTable();

      sink.write([recordItem()]);
      await waitForLockWaiter();

      sink.destroy(new Error('stopped by the test'));
      await sleep(200);
      await unlock();
      await sleep(200);

      assert.deepEqual(
        errors.map((error) => error.message),
        ['stopped by the test'],
      );
      assert.deepEqual(await storedIds('events.reclamacoes_sqs_events'), []);
      assert.equal(pool.totalCount - pool.idleCount, 0);
    });
  });

  async function waitForLockWaiter(): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const { rows } = await database.pool.query(
        `SELECT 1 FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );

      if (rows.length > 0) {
        return;
      }

      await sleep(50);
    }

    throw new Error('no backend waited for the lock within 5 seconds');
  }
});

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  SendMessageCommand,
  SetQueueAttributesCommand,
} from '@aws-sdk/client-sqs';
import pg from 'pg';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { BUNDLED_SCHEMA_PATH, type Config } from '../src/config.ts';
import type { Logger } from '../src/logger.ts';
import { runIngest } from '../src/pipelines/ingest.ts';
import { connectionOptions } from '../src/postgres.ts';
import {
  failDeleteEntries,
  failFirstAttempts,
  injectHttpFaults,
  interceptSend,
  recordReceives,
  SQS_INTERNAL_ERROR,
  SQS_THROTTLING,
} from './helpers/aws-faults.ts';
import { readQueueDepth, sendBodies, startTestAws, type TestAws } from './helpers/aws.ts';
import { assertDeliveredOnce, readDeliveryOutcome } from './helpers/delivery.ts';
import { captureLogs } from './helpers/logs.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';
import { bodyOfLength, complaint, encodeBody } from './helpers/records.ts';

const TEST_TIMEOUT_MS = 60_000;

/** SQS rejects a message body longer than 256 KiB (262,144 bytes). */
const SQS_MAX_BODY_BYTES = 256 * 1024;

/** Short enough that a redelivery would happen within the test. */
const SHORT_VISIBILITY_SECONDS = 2;

const REJECTED_NAME = 'REJECTED BY THE CHECK CONSTRAINT';

describe('ingest under faults', { timeout: TEST_TIMEOUT_MS }, () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  let recordType: RecordType;
  let aws: TestAws;

  before(async () => {
    database = await createTestDatabase();
    pool = new pg.Pool({ ...connectionOptions(database.config), max: 4 });
    pool.on('error', () => {});
    recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
  });

  after(async () => {
    await pool.end();
    await database.drop();
  });

  beforeEach(async () => {
    await database.pool.query('TRUNCATE events.reclamacoes_sqs_events, events.dead_letters');
  });

  function ingestConfig(overrides: Partial<Config['sqs']> = {}): Config {
    return {
      ...aws.config,
      sqs: { ...aws.config.sqs, ...overrides },
      ingest: { ...aws.config.ingest, batchSize: 10, batchMaxAgeMs: 50, copyConnections: 2 },
    };
  }

  async function ingestUntilEmpty(config: Config, logger: Logger) {
    return runIngest({
      config,
      logger,
      sqs: aws.sqs,
      pool,
      recordType,
      queueUrl: config.sqs.queueUrl,
      stopWhenEmpty: true,
      maxRetryDelayMs: 500,
    });
  }

  test('hostile bodies end as rows or dead letters', async () => {
    aws = await startTestAws(database.config);

    const queueUrl = aws.config.sqs.queueUrl;

    await aws.sqs.send(
      new SetQueueAttributesCommand({
        QueueUrl: queueUrl,
        Attributes: { MaximumMessageSize: String(SQS_MAX_BODY_BYTES) },
      }),
    );
    await database.pool.query(
      `ALTER TABLE events.reclamacoes_sqs_events ADD CONSTRAINT test_rejects_one_name
       CHECK (body->>'instituicao_financeira' IS DISTINCT FROM '${REJECTED_NAME}')`,
    );

    const good = recordType.toBuffer(complaint(1));
    const invalidUtf8 = Buffer.from(good);

    invalidUtf8[good.indexOf('BANCO')] = 0xff;

    const awkwardName = 'tab\there\nnew line\r\\N \\. "quote" \\\\ end\\';
    const expected: Array<[string, string]> = [
      [encodeBody(recordType, complaint(2)), 'stored'],
      [encodeBody(recordType, complaint(3, { instituicao_financeira: awkwardName })), 'stored'],
      [bodyOfLength(recordType, SQS_MAX_BODY_BYTES), 'stored'],
      ['this is not base64!', 'invalid_base64'],
      [Buffer.from('plain text, not Avro').toString('base64'), 'avro_truncated'],
      [good.subarray(0, good.length - 3).toString('base64'), 'avro_truncated'],
      [Buffer.concat([good, Buffer.from([0, 1])]).toString('base64'), 'avro_trailing_bytes'],
      [encodeBody(recordType, complaint(4, { tipo: 'nul\u0000inside' })), 'unsupported_text'],
      [invalidUtf8.toString('base64'), 'unsupported_text'],
      [
        encodeBody(recordType, complaint(5, { instituicao_financeira: REJECTED_NAME })),
        'rejected_by_database',
      ],
    ];

    // The emulator, like SQS, takes neither an empty body nor one over the size limit.
    await assert.rejects(
      aws.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: '' })),
    );
    await assert.rejects(
      aws.sqs.send(
        new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'A'.repeat(SQS_MAX_BODY_BYTES + 4) }),
      ),
    );

    const sentIds = await sendBodies(aws.sqs, queueUrl, expected.map(([body]) => body));

    try {
      await ingestUntilEmpty(ingestConfig(), captureLogs().logger);
    } finally {
      await database.pool.query(
        'ALTER TABLE events.reclamacoes_sqs_events DROP CONSTRAINT test_rejects_one_name',
      );
    }

    const { rows: deadLetters } = await database.pool.query<{ message_id: string; error_class: string }>(
      'SELECT message_id, error_class FROM events.dead_letters',
    );
    const classById = new Map(deadLetters.map((row) => [row.message_id, row.error_class]));
    const { rows: stored } = await database.pool.query<{ message_id: string; name: string }>(
      `SELECT message_id, body->>'instituicao_financeira' AS name FROM events.reclamacoes_sqs_events`,
    );
    const nameById = new Map(stored.map((row) => [row.message_id, row.name]));

    expected.forEach(([, outcome], index) => {
      const messageId = sentIds[index] ?? '';
      const actual = nameById.has(messageId) ? 'stored' : classById.get(messageId);

      assert.equal(actual, outcome, `message ${index}`);
    });
    assert.equal(nameById.get(sentIds[1] ?? ''), awkwardName);
    assert.ok((nameById.get(sentIds[2] ?? '')?.length ?? 0) > 190_000);
    assertDeliveredOnce(await readDeliveryOutcome(database.pool, aws.sqs, queueUrl), sentIds);
    await aws.stop();
  });

  test('redelivered message is stored once and deleted with its new handle', async () => {
    aws = await startTestAws(database.config);

    const config = ingestConfig({ visibilityTimeoutSeconds: 1 });
    const bodies = Array.from({ length: 15 }, (_, index) => encodeBody(recordType, complaint(index)));
    const sentIds = await sendBodies(aws.sqs, config.sqs.queueUrl, bodies);
    const firstHandles = new Set<string>();
    // The first consumer stores every message, but SQS rejects all of its deletes.
    const restoreDeletes = failDeleteEntries(aws.sqs, (handle) => {
      firstHandles.add(handle);

      return true;
    });
    const firstLogs = captureLogs();

    const first = await ingestUntilEmpty(config, firstLogs.logger).finally(restoreDeletes);

    await sleep(1500);

    const secondHandles: string[] = [];
    const restoreRecording = interceptSend(aws.sqs, async (command, send, options) => {
      if (command.constructor.name === 'DeleteMessageBatchCommand') {
        const entries = command.input.Entries as Array<{ ReceiptHandle: string }>;

        secondHandles.push(...entries.map((entry) => entry.ReceiptHandle));
      }

      return send(command, options);
    });
    const second = await ingestUntilEmpty(config, captureLogs().logger).finally(restoreRecording);
    const undeletedIds = firstLogs
      .withMessage('messages stored but not deleted; they will be redelivered and skipped as duplicates')
      .flatMap((line) => line.messageIds as string[]);

    assert.equal(first.storedCount, 15);
    assert.equal(first.undeletedCount, 15);
    assert.deepEqual(undeletedIds.sort(), [...sentIds].sort());
    assert.equal(second.storedCount, 0);
    assert.equal(second.duplicateCount, 15);
    assert.equal(second.deletedCount, 15);
    assert.equal(secondHandles.length, 15);
    assert.ok(secondHandles.every((handle) => !firstHandles.has(handle)), 'new handles are used');
    assertDeliveredOnce(await readDeliveryOutcome(database.pool, aws.sqs, config.sqs.queueUrl), sentIds);
    await aws.stop();
  });

  test('slow batch keeps its messages invisible until it commits', async () => {
    aws = await startTestAws(database.config);

    const config = ingestConfig({ visibilityTimeoutSeconds: SHORT_VISIBILITY_SECONDS });
    const bodies = Array.from({ length: 30 }, (_, index) => encodeBody(recordType, complaint(index)));
    const sentIds = await sendBodies(aws.sqs, config.sqs.queueUrl, bodies);
    const locker = await database.pool.connect();
    const { received, restore } = recordReceives(aws.sqs);
    let extendCalls = 0;
    const restoreCounting = interceptSend(aws.sqs, async (command, send, options) => {
      if (command.constructor.name === 'ChangeMessageVisibilityBatchCommand') {
        extendCalls += 1;
      }

      return send(command, options);
    });

    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events.reclamacoes_sqs_events IN ACCESS EXCLUSIVE MODE');

    const ingest = ingestUntilEmpty(config, captureLogs().logger);
    const visibleWhileHeld: number[] = [];

    // Hold the batches for more than twice the visibility timeout.
    for (let sample = 0; sample < 25; sample += 1) {
      await sleep(200);
      visibleWhileHeld.push((await readQueueDepth(aws.sqs, aws.config.sqs.queueUrl)).visible);
    }

    await locker.query('COMMIT');
    locker.release();

    const counts = await ingest.finally(() => {
      restoreCounting();
      restore();
    });
    const receivedIds = received.map((message) => message.MessageId ?? '');

    assert.deepEqual(visibleWhileHeld.filter((count) => count > 0), []);
    assert.ok(extendCalls >= 3, `expected visibility extensions, saw ${extendCalls}`);
    assert.equal(receivedIds.length, 30, 'no message was received twice');
    assert.equal(new Set(receivedIds).size, 30);
    assert.equal(counts.storedCount, 30);
    assertDeliveredOnce(await readDeliveryOutcome(database.pool, aws.sqs, config.sqs.queueUrl), sentIds);
    await aws.stop();
  });

  test('throttled and failing SQS calls are retried', async () => {
    aws = await startTestAws(database.config);

    const config = ingestConfig({ receiveConcurrency: 1 });
    const bodies = Array.from({ length: 40 }, (_, index) => encodeBody(recordType, complaint(index)));
    const sentIds = await sendBodies(aws.sqs, config.sqs.queueUrl, bodies);
    // Two throttled receives the SDK absorbs, then five 500s that exhaust its five attempts.
    let receiveAttempts = 0;
    const deleteFaults = failFirstAttempts('DeleteMessageBatchCommand', 3, SQS_INTERNAL_ERROR);
    const removeFaults = injectHttpFaults(aws.sqs, (commandName) => {
      if (commandName === 'ReceiveMessageCommand') {
        receiveAttempts += 1;

        if (receiveAttempts <= 2) {
          return SQS_THROTTLING;
        }

        return receiveAttempts >= 4 && receiveAttempts <= 8 ? SQS_INTERNAL_ERROR : undefined;
      }

      return deleteFaults.pickFault(commandName);
    });
    const logs = captureLogs();

    const counts = await ingestUntilEmpty(config, logs.logger).finally(removeFaults);
    const receiveRetries = logs.withMessage('receive failed, retrying');

    assert.equal(receiveRetries.length, 1);
    assert.equal(receiveRetries[0]?.errorCode, 'InternalError');
    assert.ok(deleteFaults.attempts() > 3);
    assert.equal(logs.withMessage('delete failed, retrying').length, 0);
    assert.equal(counts.storedCount, 40);
    assert.equal(counts.deletedCount, 40);
    assertDeliveredOnce(await readDeliveryOutcome(database.pool, aws.sqs, config.sqs.queueUrl), sentIds);
    await aws.stop();
  });
});

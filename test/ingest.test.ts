import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import avro from 'avsc';
import { BUNDLED_SCHEMA_PATH } from '../src/config.ts';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { createLogger } from '../src/logger.ts';
import { runIngest } from '../src/pipelines/ingest.ts';
import { countQueueMessages, sendBodies, startTestAws, type TestAws } from './helpers/aws.ts';
import { captureLogs } from './helpers/logs.ts';
import { complaint, encodeBody } from './helpers/records.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';

const logger = createLogger('silent');

/** Builds a body whose fifth field, the cnpj_if union, names branch 3 of a two-branch union. */
function withInvalidUnionBranch(recordType: RecordType): string {
  const valid = recordType.toBuffer(complaint(8, { cnpj_if: null }));
  const stringType = avro.Type.forSchema('string');
  const headerLength = ['ano', 'trimestre', 'categoria', 'tipo']
    .map((field) => stringType.toBuffer(complaint(8)[field as 'ano']).length)
    .reduce((total, length) => total + length, 0);
  const corrupted = Buffer.from(valid);

  // Union indexes are zigzag varints: 0x06 is 3.
  corrupted[headerLength] = 0x06;

  return corrupted.toString('base64');
}

describe('ingest pipeline', () => {
  let database: TestDatabase;
  let aws: TestAws;
  let recordType: RecordType;

  before(async () => {
    database = await createTestDatabase();
    recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
  });

  after(async () => {
    await database.drop();
  });

  async function ingestAll() {
    return runIngest({
      config: aws.config,
      logger,
      sqs: aws.sqs,
      pool: database.pool,
      recordType,
      queueUrl: aws.config.sqs.queueUrl,
      stopWhenEmpty: true,
    });
  }

  async function countRows(table: string): Promise<number> {
    const result = await database.pool.query<{ count: string }>(`SELECT count(*) FROM ${table}`);

    return Number(result.rows[0]?.count);
  }

  test('stores every message once and empties the queue', async () => {
    aws = await startTestAws(database.config);
    await database.pool.query('TRUNCATE events.reclamacoes_sqs_events, events.dead_letters');

    const bodies = Array.from({ length: 250 }, (_, index) => encodeBody(recordType, complaint(index)));

    await sendBodies(aws.sqs, aws.config.sqs.queueUrl, bodies);

    const counts = await ingestAll();

    assert.equal(counts.storedCount, 250);
    assert.equal(counts.deletedCount, 250);
    assert.equal(await countRows('events.reclamacoes_sqs_events'), 250);
    assert.equal(await countQueueMessages(aws.sqs, aws.config.sqs.queueUrl), 0);
    await aws.stop();
  });

  test('closes batches at COPY_BATCH_MAX_BYTES', async () => {
    aws = await startTestAws(database.config);
    await database.pool.query('TRUNCATE events.reclamacoes_sqs_events, events.dead_letters');

    const bodies = Array.from({ length: 6 }, (_, index) => encodeBody(recordType, complaint(index)));
    const largest = Math.max(...bodies.map((body) => body.length));
    const logs = captureLogs();

    await sendBodies(aws.sqs, aws.config.sqs.queueUrl, bodies);

    const counts = await runIngest({
      config: { ...aws.config, ingest: { ...aws.config.ingest, batchMaxBytes: 2 * largest } },
      logger: logs.logger,
      sqs: aws.sqs,
      pool: database.pool,
      recordType,
      queueUrl: aws.config.sqs.queueUrl,
      stopWhenEmpty: true,
    });
    const batchSizes = logs.withMessage('batch committed').map((line) => line.messageCount);

    assert.equal(counts.storedCount, 6);
    assert.ok(batchSizes.length >= 3, `batches of ${batchSizes.join(', ')} messages`);
    assert.ok(batchSizes.every((size) => Number(size) <= 2), `batches of ${batchSizes.join(', ')}`);
    await aws.stop();
  });

  test('stores the decoded record as jsonb with the schema field names', async () => {
    aws = await startTestAws(database.config);
    await database.pool.query('TRUNCATE events.reclamacoes_sqs_events, events.dead_letters');

    const record = complaint(1, { instituicao_financeira: 'tab\there, newline\nand \\ backslash\r' });

    await sendBodies(aws.sqs, aws.config.sqs.queueUrl, [encodeBody(recordType, record)]);
    await ingestAll();

    const { rows } = await database.pool.query('SELECT body, md5_body FROM events.reclamacoes_sqs_events');

    assert.deepEqual(rows[0].body, record);
    assert.match(rows[0].md5_body, /^[0-9a-f]{32}$/);
    await aws.stop();
  });

  test('redelivered message yields one row and is deleted', async () => {
    aws = await startTestAws(database.config);
    await database.pool.query('TRUNCATE events.reclamacoes_sqs_events, events.dead_letters');
    await sendBodies(aws.sqs, aws.config.sqs.queueUrl, [encodeBody(recordType, complaint(7))]);

    // A first consumer stores the message, then dies before deleting it.
    const first = await ingestOnceWithoutDelete();
    const counts = await ingestAll();

    assert.equal(first, 1);
    assert.equal(counts.duplicateCount, 1);
    assert.equal(counts.storedCount, 0);
    assert.equal(counts.deletedCount, 1);
    assert.equal(await countRows('events.reclamacoes_sqs_events'), 1);
    assert.equal(await countQueueMessages(aws.sqs, aws.config.sqs.queueUrl), 0);
    await aws.stop();
  });

  test('poison messages go to dead letters beside good ones', async () => {
    aws = await startTestAws(database.config);
    await database.pool.query('TRUNCATE events.reclamacoes_sqs_events, events.dead_letters');

    const good = encodeBody(recordType, complaint(3));
    const truncated = good.slice(0, 40);
    const poison = [
      'not base64 at all!',
      Buffer.from([0xff, 0xff, 0xff]).toString('base64'),
      Buffer.from(recordType.toBuffer(complaint(4))).subarray(0, 20).toString('base64'),
      Buffer.concat([recordType.toBuffer(complaint(5)), Buffer.from([1, 2])]).toString('base64'),
      encodeBody(recordType, complaint(6, { tipo: 'nul\u0000inside' })),
      withInvalidUnionBranch(recordType),
    ];

    await sendBodies(aws.sqs, aws.config.sqs.queueUrl, [good, ...poison, truncated]);

    const counts = await ingestAll();
    const { rows } = await database.pool.query<{ error_class: string }>(
      'SELECT error_class FROM events.dead_letters ORDER BY error_class',
    );

    assert.equal(counts.storedCount, 1);
    assert.equal(counts.deadLetterCount, 7);
    assert.deepEqual(
      rows.map((row) => row.error_class),
      [
        'avro_trailing_bytes',
        'avro_truncated',
        'avro_truncated',
        'avro_truncated',
        'invalid_base64',
        'schema_mismatch',
        'unsupported_text',
      ],
    );
    assert.equal(await countQueueMessages(aws.sqs, aws.config.sqs.queueUrl), 0);
    await aws.stop();
  });

  /** Receives and stores one message the way a crashed consumer would: stored, not deleted. */
  async function ingestOnceWithoutDelete(): Promise<number> {
    const { Messages = [] } = await aws.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: aws.config.sqs.queueUrl,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: 0,
      }),
    );

    for (const message of Messages) {
      const record = recordType.fromBuffer(Buffer.from(message.Body ?? '', 'base64'));

      await database.pool.query(
        `INSERT INTO events.reclamacoes_sqs_events (message_id, receipt_handle, md5_body, body)
         VALUES ($1, $2, $3, $4)`,
        [message.MessageId, message.ReceiptHandle, message.MD5OfBody, JSON.stringify(record)],
      );
    }

    return Messages.length;
  }
});

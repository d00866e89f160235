import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { BUNDLED_SCHEMA_PATH } from '../src/config.ts';
import { countQueueMessages, sendBodies, startTestAws, type TestAws } from './helpers/aws.ts';
import { cliEnvironment, spawnCli } from './helpers/cli.ts';
import { assertDeliveredOnce, readDeliveryOutcome } from './helpers/delivery.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';
import { complaint, encodeBody } from './helpers/records.ts';

const TEST_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS = 20_000;

const MESSAGE_COUNT = 3000;
const POISON_EVERY = 50;
const KILL_ROUNDS = 5;

/** Maximum random delay between the start of receiving and SIGKILL. */
const MAX_KILL_DELAY_MS = 600;

/** Short, so that messages of a killed process come back within the test. */
const VISIBILITY_TIMEOUT_SECONDS = 2;

const DRAIN_TIMEOUT_MS = 45_000;

describe('run command killed repeatedly', { timeout: TEST_TIMEOUT_MS }, () => {
  let database: TestDatabase;
  let recordType: RecordType;
  let aws: TestAws;

  before(async () => {
    database = await createTestDatabase();
    recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
    aws = await startTestAws(database.config);
  });

  after(async () => {
    await aws.stop();
    await database.drop();
  });

  function ingestEnvironment(): NodeJS.ProcessEnv {
    return {
      ...cliEnvironment(aws.config),
      SQS_WAIT_TIME_SECONDS: '1',
      SQS_VISIBILITY_TIMEOUT_SECONDS: String(VISIBILITY_TIMEOUT_SECONDS),
      COPY_BATCH_SIZE: '100',
      COPY_BATCH_MAX_AGE_MS: '50',
    };
  }

  /** Builds body `index`: a valid record, or every POISON_EVERY-th time one that cannot decode. */
  function body(index: number): string {
    if (index % POISON_EVERY === 0) {
      const isText = index % (2 * POISON_EVERY) === 0;

      return isText ? `not base64 #${index}` : Buffer.from(`junk ${index}`).toString('base64');
    }

    return encodeBody(recordType, complaint(index));
  }

  async function countAccounted(): Promise<number> {
    const { rows } = await database.pool.query<{ count: number }>(
      `SELECT (SELECT count(*) FROM events.reclamacoes_sqs_events)::int
         + (SELECT count(*) FROM events.dead_letters)::int AS count`,
    );

    return rows[0]?.count ?? 0;
  }

  test('SIGKILL at random points loses and duplicates nothing', async () => {
    const sentIds = await sendBodies(
      aws.sqs,
      aws.config.sqs.queueUrl,
      Array.from({ length: MESSAGE_COUNT }, (_, index) => body(index)),
    );
    const accountedAfterKill: number[] = [];
    const killDelaysMs: number[] = [];

    for (let round = 0; round < KILL_ROUNDS; round += 1) {
      const service = spawnCli(['run', '--pipelines', 'ingest'], ingestEnvironment());
      const killDelayMs = Math.round(Math.random() * MAX_KILL_DELAY_MS);

      await service.waitForLog('receiving started', START_TIMEOUT_MS);
      await sleep(killDelayMs);
      service.child.kill('SIGKILL');

      const exit = await service.exited;

      assert.equal(exit.signal, 'SIGKILL');
      killDelaysMs.push(killDelayMs);
      accountedAfterKill.push(await countAccounted());
    }

    const service = spawnCli(['run', '--pipelines', 'ingest'], ingestEnvironment());
    const deadline = Date.now() + DRAIN_TIMEOUT_MS;

    await service.waitForLog('receiving started', START_TIMEOUT_MS);

    while (Date.now() < deadline) {
      const isDrained =
        (await countAccounted()) >= MESSAGE_COUNT &&
        (await countQueueMessages(aws.sqs, aws.config.sqs.queueUrl)) === 0;

      if (isDrained) {
        break;
      }

      await sleep(250);
    }

    service.child.kill('SIGTERM');

    const exit = await service.exited;
    const outcome = await readDeliveryOutcome(database.pool, aws.sqs, aws.config.sqs.queueUrl);
    const context =
      `kill delays ${killDelaysMs.join(', ')} ms; ` +
      `stored after each kill ${accountedAfterKill.join(', ')}`;

    assert.equal(exit.code, 0);
    assert.ok(accountedAfterKill.some((count) => count > 0 && count < MESSAGE_COUNT), context);
    assert.equal(outcome.deadLetterIds.length, MESSAGE_COUNT / POISON_EVERY, context);
    assertDeliveredOnce(outcome, sentIds);
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { BUNDLED_SCHEMA_PATH, type Config } from '../src/config.ts';
import { startEmbeddedPostgres } from '../src/local/embedded-postgres.ts';
import { runIngest } from '../src/pipelines/ingest.ts';
import { connectionOptions, migrate } from '../src/postgres.ts';
import { recordReceives } from './helpers/aws-faults.ts';
import { readQueueDepth, sendBodies, startTestAws, type TestAws } from './helpers/aws.ts';
import { assertDeliveredOnce, readDeliveryOutcome } from './helpers/delivery.ts';
import { captureLogs, type CapturedLogs } from './helpers/logs.ts';
import { createTestDatabase, testConfig, type TestDatabase } from './helpers/postgres.ts';
import { complaint, encodeBody } from './helpers/records.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

const TEST_TIMEOUT_MS = 60_000;

/** Retry pauses are capped low so that recovery takes about a second. */
const MAX_RETRY_DELAY_MS = 1000;

/** Shorter than the outage, so that only extended visibility prevents redelivery. */
const VISIBILITY_TIMEOUT_SECONDS = 2;
const OUTAGE_MS = 3000;

/** Messages sent during the outage: more than the pipeline can hold. */
const OUTAGE_MESSAGE_COUNT = 400;

/**
 * Messages the pipeline may hold while it cannot write, an estimate from its buffers: two
 * receives of 10, the source, decode and batch buffers, and two batches being written.
 */
const MAX_HELD_MESSAGES = 200;

const DRAIN_TIMEOUT_MS = 30_000;

/** Application name of the ingest's connections, so that the test can tell them apart. */
const INGEST_APPLICATION = 'ingest-under-test';

/** Starts and ends a fault between the tool and PostgreSQL. */
type Outage = { begin(): Promise<void>; end(): Promise<void> };

describe('ingest through a PostgreSQL outage', { timeout: TEST_TIMEOUT_MS }, () => {
  let recordType: RecordType;

  before(async () => {
    recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
  });

  /** What the scenario observed while the database was unreachable. */
  type OutageObservation = { heldCounts: number[]; visibleCount: number; retries: CapturedLogs };

  /**
   * Runs the ingest, lets it store a first batch, starts the outage, sends messages meanwhile,
   * ends it and waits for the queue to drain. Asserts the delivery guarantee at the end.
   */
  async function ingestThroughOutage(
    config: Config,
    ingestPool: pg.Pool,
    checkPool: pg.Pool,
    outage: Outage,
  ): Promise<OutageObservation> {
    const aws = await startTestAws(config);
    const ingestConfig: Config = {
      ...aws.config,
      sqs: {
        ...aws.config.sqs,
        receiveConcurrency: 2,
        visibilityTimeoutSeconds: VISIBILITY_TIMEOUT_SECONDS,
      },
      ingest: { ...aws.config.ingest, batchSize: 10, batchMaxAgeMs: 50, copyConnections: 2 },
    };
    const queueUrl = ingestConfig.sqs.queueUrl;
    const logs = captureLogs();
    const { received, restore: restoreSend } = recordReceives(aws.sqs);
    const stop = new AbortController();
    const ingest = runIngest({
      config: ingestConfig,
      logger: logs.logger,
      sqs: aws.sqs,
      pool: ingestPool,
      recordType,
      queueUrl,
      signal: stop.signal,
      maxRetryDelayMs: MAX_RETRY_DELAY_MS,
    });
    const warmUpIds = await sendBodies(aws.sqs, queueUrl, bodies(0, 20));

    await waitForAccounted(checkPool, 20);
    await outage.begin();

    const outageIds = await sendBodies(aws.sqs, queueUrl, bodies(20, OUTAGE_MESSAGE_COUNT));
    const heldCounts: number[] = [];

    for (let sample = 0; sample < OUTAGE_MS / 500; sample += 1) {
      await sleep(500);
      heldCounts.push((await readQueueDepth(aws.sqs, queueUrl)).inFlight);
    }

    const { visible: visibleCount } = await readQueueDepth(aws.sqs, queueUrl);

    await outage.end();
    await waitForAccounted(checkPool, 20 + OUTAGE_MESSAGE_COUNT);
    stop.abort();
    await ingest;
    restoreSend();

    const receivedIds = received.map((message) => message.MessageId);
    const sentIds = [...warmUpIds, ...outageIds];

    assert.equal(receivedIds.length, sentIds.length, 'no message was received twice');
    assertDeliveredOnce(await readDeliveryOutcome(checkPool, aws.sqs, queueUrl), sentIds);
    await aws.stop();

    return { heldCounts, visibleCount, retries: logs };
  }

  function bodies(first: number, count: number): string[] {
    return Array.from({ length: count }, (_, index) =>
      encodeBody(recordType, complaint(first + index)),
    );
  }

  /** Asserts that the ingest stopped receiving and retried with capped, growing pauses. */
  function assertPausedAndRetried(observation: OutageObservation): void {
    const { heldCounts, visibleCount, retries } = observation;
    const retryLines = retries.withMessage('database write failed, retrying');
    const attempts = retryLines.map((line) => line.attempt as number);
    const delays = retryLines.map((line) => line.delayMs as number);

    assert.ok(heldCounts.every((count) => count <= MAX_HELD_MESSAGES), `held ${heldCounts.join(', ')}`);
    assert.equal(heldCounts.at(-1), heldCounts.at(-2), 'receiving stopped while writes failed');
    assert.ok(visibleCount >= OUTAGE_MESSAGE_COUNT - MAX_HELD_MESSAGES, `visible ${visibleCount}`);
    assert.ok(Math.max(...attempts) >= 3, `attempts ${attempts.join(', ')}`);
    assert.ok(delays.every((delayMs) => delayMs <= MAX_RETRY_DELAY_MS), `delays ${delays.join(', ')}`);
    assert.ok(retryLines.every((line) => line.err !== undefined));
  }

  test('resumes after pg_terminate_backend of its connections', async () => {
    const database = await createTestDatabase();
    const ingestPool = ingestPoolFor(database.config);
    let terminatedCount = 0;
    let isTerminating = false;
    let terminating: Promise<void> = Promise.resolve();

    // Terminate the ingest's backends every 100 ms for the whole outage.
    const outage: Outage = {
      async begin() {
        isTerminating = true;
        terminating = (async () => {
          for (let round = 0; round < 100 && isTerminating; round += 1) {
            const { rows } = await database.pool.query(
              `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE application_name = $1`,
              [INGEST_APPLICATION],
            );

            terminatedCount += rows.length;
            await sleep(100);
          }
        })();
      },
      async end() {
        isTerminating = false;
        await terminating;
      },
    };

    try {
      const observation = await ingestThroughOutage(database.config, ingestPool, database.pool, outage);
      const retryLines = observation.retries.withMessage('database write failed, retrying');

      assert.ok(terminatedCount > 0);
      assert.ok(retryLines.length > 0);
    } finally {
      await ingestPool.end();
      await database.drop();
    }
  });

  test('resumes after PostgreSQL stops and starts again', async () => {
    const server = await startEmbeddedPostgres();
    const config = await testConfig({
      POSTGRES_HOST: server.host,
      POSTGRES_PORT: String(server.port),
      POSTGRES_USER: server.user,
      POSTGRES_PASSWORD: server.password,
      DB_NAME: server.database,
    });
    const checkPool = new pg.Pool({ ...connectionOptions(config), max: 2 });
    const ingestPool = ingestPoolFor(config);

    checkPool.on('error', () => {});
    await migrate(checkPool);

    try {
      const observation = await ingestThroughOutage(config, ingestPool, checkPool, {
        begin: () => server.shutdown(),
        end: () => server.start(),
      });

      assertPausedAndRetried(observation);
    } finally {
      await ingestPool.end();
      await checkPool.end();
      await server.stop();
    }
  });

  test('resumes after its network path is cut and restored', async () => {
    const database = await createTestDatabase();
    const proxy = await startTcpProxy({
      targetHost: database.config.postgres.host,
      targetPort: database.config.postgres.port,
    });
    const proxiedConfig: Config = {
      ...database.config,
      postgres: { ...database.config.postgres, host: '127.0.0.1', port: proxy.port },
    };
    const ingestPool = ingestPoolFor(proxiedConfig);

    try {
      const observation = await ingestThroughOutage(database.config, ingestPool, database.pool, {
        async begin() {
          proxy.refuse();
          proxy.cutAll();
        },
        async end() {
          proxy.restore();
        },
      });

      assertPausedAndRetried(observation);
    } finally {
      await ingestPool.end();
      await proxy.stop();
      await database.drop();
    }
  });
});

function ingestPoolFor(config: Config): pg.Pool {
  const pool = new pg.Pool({
    ...connectionOptions(config),
    application_name: INGEST_APPLICATION,
    max: 2,
  });

  // Idle connections lost in the outage are reported here; the pool replaces them.
  pool.on('error', () => {});

  return pool;
}

/** Waits until rows plus dead letters reach `count`, for at most DRAIN_TIMEOUT_MS. */
async function waitForAccounted(pool: pg.Pool, count: number): Promise<void> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  let accounted = 0;

  while (Date.now() < deadline) {
    const { rows } = await pool
      .query<{ count: string }>(
        `SELECT (SELECT count(*) FROM events.reclamacoes_sqs_events)
           + (SELECT count(*) FROM events.dead_letters) AS count`,
      )
      .catch(() => ({ rows: [{ count: '0' }] }));

    accounted = Number(rows[0]?.count);

    if (accounted >= count) {
      return;
    }

    await sleep(100);
  }

  throw new Error(`only ${accounted} of ${count} messages were stored within ${DRAIN_TIMEOUT_MS} ms`);
}

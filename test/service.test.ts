import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import pg from 'pg';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { createS3Client } from '../src/aws.ts';
import { BUNDLED_SCHEMA_PATH, type Config } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { runIngest } from '../src/pipelines/ingest.ts';
import { connectionOptions } from '../src/postgres.ts';
import { readQueueDepth, sendBodies, startTestAws, type TestAws } from './helpers/aws.ts';
import { cliEnvironment, spawnCli, type CliProcess } from './helpers/cli.ts';
import { assertDeliveredOnce, readDeliveryOutcome } from './helpers/delivery.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';
import { complaint, encodeBody } from './helpers/records.ts';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';

const TEST_TIMEOUT_MS = 60_000;

/** Time the CLI gets to start under tsx and log that it receives. */
const START_TIMEOUT_MS = 20_000;

/** The source lets receives under way finish for a second after a stop, then aborts them. */
const SOURCE_STOP_DELAY_MS = 1000;

/** Exit status of the run command after a second signal. */
const FORCED_EXIT_CODE = 130;

describe('run command', { timeout: TEST_TIMEOUT_MS }, () => {
  let database: TestDatabase;
  let recordType: RecordType;
  let aws: TestAws;
  let cli: CliProcess | undefined;
  let unlock: (() => Promise<void>) | undefined;

  before(async () => {
    database = await createTestDatabase();
    database.pool.on('error', () => {});
    recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
  });

  after(async () => {
    await database.drop();
  });

  beforeEach(async () => {
    await database.pool.query(
      'TRUNCATE events.reclamacoes_sqs_events, events.dead_letters, events.export_runs',
    );
    aws = await startTestAws(database.config);
  });

  // A failed assertion must not leave the child running or the table locked.
  afterEach(async () => {
    if (cli !== undefined && cli.child.exitCode === null && cli.child.signalCode === null) {
      cli.child.kill('SIGKILL');
      await cli.exited;
    }

    await unlock?.();
    unlock = undefined;
    cli = undefined;
    await aws.stop();
  });

  /**
   * Starts `run --pipelines ingest`. Long polls are short here unless a test asks otherwise:
   * the emulator keeps a long poll waiting after its client aborted it and hands it messages
   * that no process then handles, which would hide what the tool itself receives.
   */
  function startIngestCli(settings: NodeJS.ProcessEnv = {}): CliProcess {
    cli = spawnCli(['run', '--pipelines', 'ingest'], {
      ...cliEnvironment(aws.config),
      SQS_WAIT_TIME_SECONDS: '0',
      SQS_VISIBILITY_TIMEOUT_SECONDS: '60',
      COPY_BATCH_SIZE: '10',
      COPY_BATCH_MAX_AGE_MS: '50',
      ...settings,
    });

    return cli;
  }

  async function lockEventsTable(): Promise<void> {
    const locker = await database.pool.connect();

    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events.reclamacoes_sqs_events IN ACCESS EXCLUSIVE MODE');
    unlock = async () => {
      await locker.query('COMMIT');
      locker.release();
    };
  }

  /** Waits until `count` messages are in flight, for at most 10 seconds. */
  async function waitForInFlight(count: number): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      if ((await readQueueDepth(aws.sqs, aws.config.sqs.queueUrl)).inFlight >= count) {
        return;
      }

      await sleep(100);
    }

    throw new Error(`${count} messages were not received within 10 seconds`);
  }

  /** Starts a TCP proxy to the database and a configuration that connects through it. */
  async function startDatabaseProxy(): Promise<{ proxy: TcpProxy; proxiedConfig: Config }> {
    const proxy = await startTcpProxy({
      targetHost: database.config.postgres.host,
      targetPort: database.config.postgres.port,
    });
    const proxiedConfig: Config = {
      ...aws.config,
      postgres: { ...aws.config.postgres, host: '127.0.0.1', port: proxy.port },
    };

    return { proxy, proxiedConfig };
  }

  /** Waits until every message is deleted, for at most 10 seconds. */
  async function waitForEmptyQueue(): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const depth = await readQueueDepth(aws.sqs, aws.config.sqs.queueUrl);

      if (depth.visible === 0 && depth.inFlight === 0) {
        return;
      }

      await sleep(100);
    }

    throw new Error('the queue was not empty within 10 seconds');
  }

  function sendComplaints(first: number, count: number): Promise<string[]> {
    const bodies = Array.from({ length: count }, (_, index) =>
      encodeBody(recordType, complaint(first + index)),
    );

    return sendBodies(aws.sqs, aws.config.sqs.queueUrl, bodies);
  }

  /** Ingests what is left in the queue in this process, as a restarted consumer would. */
  async function drainInProcess(config: Config = aws.config): Promise<void> {
    const pool = new pg.Pool({ ...connectionOptions(database.config), max: 2 });

    pool.on('error', () => {});

    try {
      await runIngest({
        config: { ...config, sqs: { ...config.sqs, waitTimeSeconds: 0 } },
        logger: createLogger('silent'),
        sqs: aws.sqs,
        pool,
        recordType,
        queueUrl: config.sqs.queueUrl,
        stopWhenEmpty: true,
      });
    } finally {
      await pool.end();
    }
  }

  test('SIGTERM aborts a waiting long poll', async () => {
    const service = startIngestCli({ SQS_WAIT_TIME_SECONDS: '20' });

    await service.waitForLog('receiving started', START_TIMEOUT_MS);
    await sleep(500);

    const signalledAtMs = Date.now();

    service.child.kill('SIGTERM');

    const exit = await service.exited;
    const stopped = service.logs.find((line) => line.msg === 'ingest stopped');

    assert.equal(exit.code, 0);
    assert.ok(Date.now() - signalledAtMs < SOURCE_STOP_DELAY_MS + 2000, 'the 20 s poll was cut short');
    assert.equal(stopped?.storedCount, 0);
    assert.ok(service.logs.some((line) => line.msg === 'service stopped'));
  });

  test('SIGTERM commits in-flight batches and receives nothing new', async () => {
    const service = startIngestCli({ SHUTDOWN_GRACE_SECONDS: '10' });

    await service.waitForLog('receiving started', START_TIMEOUT_MS);
    await lockEventsTable();

    const sentIds = await sendComplaints(0, 30);

    await waitForInFlight(30);
    service.child.kill('SIGTERM');
    await service.waitForLog('receiving stopped', 5000);
    await sleep(SOURCE_STOP_DELAY_MS + 200);

    const lateIds = await sendComplaints(100, 5);

    await sleep(500);

    const countsWhileStopping = await readQueueDepth(aws.sqs, aws.config.sqs.queueUrl);

    await unlock?.();
    unlock = undefined;

    const exit = await service.exited;
    const outcome = await readDeliveryOutcome(database.pool, aws.sqs, aws.config.sqs.queueUrl);

    assert.equal(countsWhileStopping.visible, 5, 'messages sent after SIGTERM are not received');
    assert.equal(exit.code, 0);
    assert.equal(outcome.storedIds.length, 30);
    assert.equal(outcome.queuedCount, 5);

    await drainInProcess();

    assertDeliveredOnce(
      await readDeliveryOutcome(database.pool, aws.sqs, aws.config.sqs.queueUrl),
      [...sentIds, ...lateIds],
    );
  });

  test('SIGTERM releases batches that miss the grace period', async () => {
    const graceSeconds = 2;
    const service = startIngestCli({ SHUTDOWN_GRACE_SECONDS: String(graceSeconds) });

    await service.waitForLog('receiving started', START_TIMEOUT_MS);
    await lockEventsTable();

    const sentIds = await sendComplaints(0, 30);

    await waitForInFlight(30);

    const signalledAtMs = Date.now();

    service.child.kill('SIGTERM');

    const exit = await service.exited;
    const exitedAfterMs = Date.now() - signalledAtMs;
    const countsAfterExit = await readQueueDepth(aws.sqs, aws.config.sqs.queueUrl);
    const released = service.logs.find((line) => line.msg === 'messages released');

    await unlock?.();
    unlock = undefined;

    const { rows } = await database.pool.query(
      'SELECT count(*)::int AS count FROM events.reclamacoes_sqs_events',
    );

    assert.equal(exit.code, 0);
    assert.ok(exitedAfterMs >= graceSeconds * 1000, `exited after ${exitedAfterMs} ms`);
    assert.ok(exitedAfterMs < graceSeconds * 1000 + 3000, `exited after ${exitedAfterMs} ms`);
    assert.equal(released?.messageCount, 30);
    assert.deepEqual(countsAfterExit, { visible: 30, inFlight: 0 });
    assert.equal(rows[0].count, 0, 'the cancelled batches were rolled back');

    await drainInProcess();

    assertDeliveredOnce(
      await readDeliveryOutcome(database.pool, aws.sqs, aws.config.sqs.queueUrl),
      sentIds,
    );
  });

  test('SIGTERM during a database outage exits within the grace period', async () => {
    const graceSeconds = 2;
    const { proxy, proxiedConfig } = await startDatabaseProxy();

    try {
      const service = startIngestCli({
        ...cliEnvironment(proxiedConfig),
        SHUTDOWN_GRACE_SECONDS: String(graceSeconds),
      });

      await service.waitForLog('receiving started', START_TIMEOUT_MS);
      proxy.refuse();
      proxy.cutAll();

      const sentIds = await sendComplaints(0, 20);

      await service.waitForLog('database write failed, retrying', 10_000);

      const signalledAtMs = Date.now();

      service.child.kill('SIGTERM');

      const exit = await service.exited;
      const exitedAfterMs = Date.now() - signalledAtMs;
      const countsAfterExit = await readQueueDepth(aws.sqs, aws.config.sqs.queueUrl);

      assert.equal(exit.code, 0);
      assert.ok(exitedAfterMs < graceSeconds * 1000 + 3000, `exited after ${exitedAfterMs} ms`);
      assert.deepEqual(countsAfterExit, { visible: 20, inFlight: 0 });

      proxy.restore();
      await drainInProcess();

      assertDeliveredOnce(
        await readDeliveryOutcome(database.pool, aws.sqs, aws.config.sqs.queueUrl),
        sentIds,
      );
    } finally {
      await proxy.stop();
    }
  });

  test('waits for a database that starts late', async () => {
    const { proxy, proxiedConfig } = await startDatabaseProxy();

    try {
      proxy.refuse();

      const sentIds = await sendComplaints(0, 5);
      const service = startIngestCli(cliEnvironment(proxiedConfig));

      await service.waitForLog('PostgreSQL does not accept connections yet; retrying', 20_000);
      proxy.restore();
      await service.waitForLog('receiving started', START_TIMEOUT_MS);
      await waitForEmptyQueue();
      service.child.kill('SIGTERM');

      assert.equal((await service.exited).code, 0);
      assertDeliveredOnce(
        await readDeliveryOutcome(database.pool, aws.sqs, aws.config.sqs.queueUrl),
        sentIds,
      );
    } finally {
      await proxy.stop();
    }
  });

  test('SIGTERM during the wait for the database exits 0', async () => {
    const { proxy, proxiedConfig } = await startDatabaseProxy();

    try {
      proxy.refuse();

      const service = startIngestCli(cliEnvironment(proxiedConfig));

      await service.waitForLog('PostgreSQL does not accept connections yet; retrying', 20_000);
      service.child.kill('SIGTERM');

      const exit = await service.exited;

      assert.equal(exit.code, 0);
      assert.ok(service.logs.some((line) => line.msg === 'stopped before PostgreSQL accepted connections'));
    } finally {
      await proxy.stop();
    }
  });

  test('second signal exits at once', async () => {
    const service = startIngestCli({
      SHUTDOWN_GRACE_SECONDS: '30',
      SQS_VISIBILITY_TIMEOUT_SECONDS: '2',
    });

    await service.waitForLog('receiving started', START_TIMEOUT_MS);
    await lockEventsTable();

    const sentIds = await sendComplaints(0, 10);

    await waitForInFlight(10);
    service.child.kill('SIGTERM');
    await service.waitForLog('shutdown requested', 5000);
    await sleep(200);

    const secondSignalAtMs = Date.now();

    service.child.kill('SIGTERM');

    const exit = await service.exited;
    const exitedAfterMs = Date.now() - secondSignalAtMs;

    await unlock?.();
    unlock = undefined;

    assert.equal(exit.code, FORCED_EXIT_CODE);
    assert.ok(exitedAfterMs < 1000, `exited after ${exitedAfterMs} ms`);

    // Nothing released them: the messages come back after their 2 s visibility timeout.
    await sleep(2500);
    await drainInProcess();

    assertDeliveredOnce(
      await readDeliveryOutcome(database.pool, aws.sqs, aws.config.sqs.queueUrl),
      sentIds,
    );
  });

  test('scheduled export succeeds after a failed run', async () => {
    const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: aws.emulator.port });
    const proxiedConfig: Config = {
      ...aws.config,
      aws: { ...aws.config.aws, endpointUrl: `http://127.0.0.1:${proxy.port}` },
    };

    proxy.refuse();
    cli = spawnCli(['run', '--pipelines', 'export'], {
      ...cliEnvironment(proxiedConfig),
      EXPORT_INTERVAL_SECONDS: '1',
    });

    try {
      const failure = await cli.waitForLog('export failed', START_TIMEOUT_MS);

      proxy.restore();

      const success = await cli.waitForLog('export finished', 15_000);

      cli.child.kill('SIGTERM');

      const exit = await cli.exited;
      const { rows } = await database.pool.query<{
        status: string;
        object_key: string | null;
        error_message: string | null;
      }>(
        'SELECT status, object_key, error_message FROM events.export_runs ORDER BY id',
      );
      const s3 = createS3Client(aws.config);
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: aws.config.s3.bucket }));

      s3.destroy();

      assert.equal(failure.level, 50);
      assert.equal(exit.code, 0);
      assert.equal(rows[0]?.status, 'failed');
      assert.ok((rows[0]?.error_message ?? '').length > 0);
      assert.ok(rows.some((row) => row.status === 'succeeded'));
      assert.deepEqual(
        (listed.Contents ?? []).map((object) => object.Key),
        rows.filter((row) => row.status === 'succeeded').map((row) => row.object_key),
      );
      assert.equal(success.key, rows.find((row) => row.status === 'succeeded')?.object_key);
    } finally {
      await proxy.stop();
    }
  });
});

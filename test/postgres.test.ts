import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPool, PostgresUnavailableError, waitForPostgres } from '../src/postgres.ts';
import { captureLogs } from './helpers/logs.ts';
import { testConfig } from './helpers/postgres.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

const RETRY_MESSAGE = 'PostgreSQL does not accept connections yet; retrying';

/** Creates a pool that connects through a proxy which refuses every connection. */
async function connectThroughRefusingProxy() {
  const config = await testConfig();
  const proxy = await startTcpProxy({
    targetHost: config.postgres.host,
    targetPort: config.postgres.port,
  });
  const pool = createPool(
    { ...config, postgres: { ...config.postgres, host: '127.0.0.1', port: proxy.port } },
    1,
  );

  proxy.refuse();

  return {
    pool,
    async stop() {
      await pool.end();
      await proxy.stop();
    },
  };
}

describe('waitForPostgres', () => {
  test('returns once the server answers', async () => {
    const config = await testConfig();
    const pool = createPool(config, 1);
    const logs = captureLogs();

    try {
      await waitForPostgres(pool, { waitSeconds: 5, logger: logs.logger, target: 'test' });
    } finally {
      await pool.end();
    }

    assert.equal(logs.withMessage(RETRY_MESSAGE).length, 0);
  });

  test('retries refused connections until the wait ends', async () => {
    const { pool, stop } = await connectThroughRefusingProxy();
    const logs = captureLogs();

    try {
      await assert.rejects(
        waitForPostgres(pool, { waitSeconds: 2, logger: logs.logger, target: 'test' }),
        (error: unknown) => {
          assert.ok(error instanceof PostgresUnavailableError);
          assert.ok(error.attempts >= 3, `${error.attempts} attempts`);
          assert.match(error.message, /\d+ attempts in \d+\.\d s\)$/);

          return true;
        },
      );
    } finally {
      await stop();
    }

    assert.ok(logs.withMessage(RETRY_MESSAGE).length >= 2);
  });

  test('tries once when the wait is 0', async () => {
    const { pool, stop } = await connectThroughRefusingProxy();
    const logs = captureLogs();

    try {
      await assert.rejects(
        waitForPostgres(pool, { waitSeconds: 0, logger: logs.logger, target: 'test' }),
        { name: 'PostgresUnavailableError', attempts: 1 },
      );
    } finally {
      await stop();
    }

    assert.equal(logs.withMessage(RETRY_MESSAGE).length, 0);
  });

  test('stops waiting when the signal aborts', async () => {
    const { pool, stop } = await connectThroughRefusingProxy();
    const logs = captureLogs();
    const abort = new AbortController();
    const waiting = waitForPostgres(pool, {
      waitSeconds: 60,
      logger: logs.logger,
      target: 'test',
      signal: abort.signal,
    });

    try {
      for (let poll = 0; poll < 50 && logs.withMessage(RETRY_MESSAGE).length === 0; poll += 1) {
        await sleep(100);
      }

      abort.abort();
      await assert.rejects(waiting, { name: 'AbortError' });
    } finally {
      await stop();
    }
  });

  test('fails without retrying for a missing database', async () => {
    const config = await testConfig();
    const database = `missing_${randomUUID().replaceAll('-', '')}`;
    const pool = createPool({ ...config, postgres: { ...config.postgres, database } }, 1);
    const logs = captureLogs();

    try {
      await assert.rejects(
        waitForPostgres(pool, { waitSeconds: 30, logger: logs.logger, target: 'test' }),
        (error: unknown) => {
          assert.ok(error instanceof PostgresUnavailableError);
          assert.equal(error.attempts, 1);
          assert.equal((error.cause as { code?: string }).code, '3D000');

          return true;
        },
      );
    } finally {
      await pool.end();
    }

    assert.equal(logs.withMessage(RETRY_MESSAGE).length, 0);
  });
});

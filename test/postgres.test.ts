import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { createPool, waitForPostgres } from '../src/postgres.ts';
import { captureLogs } from './helpers/logs.ts';
import { testConfig } from './helpers/postgres.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

const RETRY_MESSAGE = 'PostgreSQL does not accept connections yet; retrying';

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
    const config = await testConfig();
    const proxy = await startTcpProxy({
      targetHost: config.postgres.host,
      targetPort: config.postgres.port,
    });
    const pool = createPool(
      { ...config, postgres: { ...config.postgres, host: '127.0.0.1', port: proxy.port } },
      1,
    );
    const logs = captureLogs();

    proxy.refuse();

    try {
      await assert.rejects(
        waitForPostgres(pool, { waitSeconds: 2, logger: logs.logger, target: 'test' }),
      );
    } finally {
      await pool.end();
      await proxy.stop();
    }

    assert.ok(logs.withMessage(RETRY_MESSAGE).length >= 2);
  });

  test('fails without retrying for a missing database', async () => {
    const config = await testConfig();
    const database = `missing_${randomUUID().replaceAll('-', '')}`;
    const pool = createPool({ ...config, postgres: { ...config.postgres, database } }, 1);
    const logs = captureLogs();

    try {
      await assert.rejects(
        waitForPostgres(pool, { waitSeconds: 30, logger: logs.logger, target: 'test' }),
        { code: '3D000' },
      );
    } finally {
      await pool.end();
    }

    assert.equal(logs.withMessage(RETRY_MESSAGE).length, 0);
  });
});

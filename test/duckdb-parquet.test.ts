import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { createLogger } from '../src/logger.ts';
import { createDuckDbParquetSink } from '../src/sinks/duckdb-parquet.ts';

const logger = createLogger('silent');

/** More rows than the sink appends between two flushes of its appender, and not a multiple. */
const ROW_COUNT = 40_000;

function* numberedRows(count: number): Generator<unknown[]> {
  for (let index = 0; index < count; index += 1) {
    yield [index, index % 7 === 0 ? null : `row ${index}`];
  }
}

async function readParquet(path: string): Promise<unknown[][]> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();

  try {
    const reader = await connection.runAndReadAll(`SELECT n, label FROM read_parquet('${path}')`);

    return reader.getRows();
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

describe('DuckDB Parquet sink', () => {
  let workDir: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'duckdb-parquet-test-'));
  });

  after(async () => {
    await rm(workDir, { recursive: true, force: true });
  });

  test('keeps rows in order across flushes', async () => {
    const sink = createDuckDbParquetSink({
      columns: [
        { name: 'n', type: 'INTEGER' },
        { name: 'label', type: 'VARCHAR' },
      ],
      workDir,
      rowGroupRows: 10_000,
      memoryLimit: '64MB',
      logger,
    });

    await pipeline(Readable.from(numberedRows(ROW_COUNT)), sink);

    const rows = await readParquet(sink.parquetPath);

    assert.equal(sink.rowCount, ROW_COUNT);
    assert.equal(rows.length, ROW_COUNT);
    assert.deepEqual(rows, [...numberedRows(ROW_COUNT)]);
  });
});

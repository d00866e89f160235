import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { createBatchTransform, type BatchOptions } from '../src/transforms/batch.ts';

/** Runs `items` through a batch stage and returns the batches it emitted. */
async function collectBatches<T>(items: T[], options: BatchOptions<T>): Promise<T[][]> {
  const batches: T[][] = [];

  await pipeline(
    Readable.from(items),
    createBatchTransform(options),
    new Writable({
      objectMode: true,
      write(batch: T[], _encoding, callback) {
        batches.push(batch);
        callback();
      },
    }),
  );

  return batches;
}

const range = (count: number) => Array.from({ length: count }, (_, index) => index);

describe('createBatchTransform', () => {
  test('splits by item count', async () => {
    const batches = await collectBatches(range(7), { maxItems: 3, maxAgeMs: 1000 });

    assert.deepEqual(batches, [[0, 1, 2], [3, 4, 5], [6]]);
  });

  test('closes a batch at maxBytes', async () => {
    const batches = await collectBatches(['aaaa', 'bbbb', 'cc', 'dddd'], {
      maxItems: 100,
      maxAgeMs: 1000,
      maxBytes: 8,
      sizeOf: (item: string) => item.length,
    });

    assert.deepEqual(batches, [['aaaa', 'bbbb'], ['cc', 'dddd']]);
  });

  test('starts a new batch before an item would exceed maxBytes', async () => {
    const batches = await collectBatches(['aaaaa', 'bbbbb'], {
      maxItems: 100,
      maxAgeMs: 1000,
      maxBytes: 8,
      sizeOf: (item: string) => item.length,
    });

    assert.deepEqual(batches, [['aaaaa'], ['bbbbb']]);
  });

  test('gives an oversized item its own batch', async () => {
    const batches = await collectBatches(['a', 'bbbbbbbbbbbb', 'c'], {
      maxItems: 100,
      maxAgeMs: 1000,
      maxBytes: 8,
      sizeOf: (item: string) => item.length,
    });

    assert.deepEqual(batches, [['a'], ['bbbbbbbbbbbb'], ['c']]);
  });

  test('emits a partial batch after maxAgeMs', async () => {
    const stage = createBatchTransform<number>({ maxItems: 100, maxAgeMs: 20 });
    const emitted: number[][] = [];

    stage.on('data', (batch: number[]) => emitted.push(batch));
    stage.write(1);
    stage.write(2);
    await sleep(200);

    assert.deepEqual(emitted, [[1, 2]]);

    stage.destroy();
  });

  test('holds aged batches while downstream is busy', async () => {
    const stage = createBatchTransform<number>({ maxItems: 1000, maxAgeMs: 10 });
    let readCount = 0;
    const source = Readable.from(
      (async function* () {
        for (let item = 0; item < 1000; item += 1) {
          readCount += 1;
          yield item;
          await sleep(5);
        }
      })(),
    );

    source.pipe(stage);
    // Nothing reads the batches. Each partial batch ages before the next item arrives, and
    // the source is still sending when the buffer is counted.
    await sleep(600);

    const bufferedBatches = stage.readableLength;

    source.destroy();
    stage.destroy();

    assert.ok(readCount > 50, `the source was read ${readCount} times`);
    assert.ok(readCount < 1000, `the source was read ${readCount} times`);
    assert.ok(bufferedBatches <= 2, `${bufferedBatches} batches buffered`);
  });

  test('stops taking items while downstream is busy', async () => {
    let readCount = 0;
    const source = Readable.from(
      (function* () {
        for (const item of range(100_000)) {
          readCount += 1;
          yield item;
        }
      })(),
    );
    const stage = createBatchTransform<number>({ maxItems: 100, maxAgeMs: 1000 });

    source.pipe(stage);
    // Nothing reads the batches, so the stage must push back on the source.
    await sleep(200);

    // Two batches wait downstream, plus a small buffer in each stream: well under the 300
    // items of a stage that also buffered a whole batch ahead of the one it fills.
    assert.ok(readCount < 300, `the source was read ${readCount} times`);

    source.destroy();
    stage.destroy();
  });
});

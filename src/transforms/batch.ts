import { Transform, type TransformCallback } from 'node:stream';

export type BatchOptions<T> = {
  /** Items per batch at most. */
  maxItems: number;
  /** Milliseconds the first item of a partial batch waits before the batch is emitted. */
  maxAgeMs: number;
  /**
   * Sum of `sizeOf` over a batch at which it is emitted, even with fewer than `maxItems`. An
   * item larger than this makes a batch of its own.
   */
  maxBytes?: number;
  /** Size of one item in bytes, for `maxBytes`. */
  sizeOf?: (item: T) => number;
};

/** Items the stage accepts ahead of the batch being filled when downstream is busy. */
const WRITABLE_HIGH_WATER_MARK = 16;

/**
 * Transform stage that groups items into arrays of at most `maxItems` items and `maxBytes`
 * bytes, emitting a partial batch once its first item is `maxAgeMs` old, so a quiet queue
 * still commits promptly. While two batches wait for downstream, it takes at most
 * WRITABLE_HIGH_WATER_MARK more items, so memory is bounded in bytes as well as in items.
 */
export function createBatchTransform<T>(options: BatchOptions<T>): Transform {
  const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
  const sizeOf = options.sizeOf ?? (() => 0);
  let pending: T[] = [];
  let pendingBytes = 0;
  let timer: NodeJS.Timeout | undefined;

  const stage = new Transform({
    objectMode: true,
    // Two complete batches wait for the writer. The batch being filled is `pending`.
    readableHighWaterMark: 2,
    writableHighWaterMark: WRITABLE_HIGH_WATER_MARK,
    transform(item: T, _encoding, callback: TransformCallback) {
      const size = sizeOf(item);

      if (pending.length > 0 && pendingBytes + size > maxBytes) {
        emitPending();
      }

      pending.push(item);
      pendingBytes += size;

      if (pending.length >= options.maxItems || pendingBytes >= maxBytes) {
        emitPending();
      } else if (timer === undefined) {
        timer = setTimeout(emitAgedBatch, options.maxAgeMs);
      }

      callback();
    },
    flush(callback: TransformCallback) {
      emitPending();
      callback();
    },
    destroy(error, callback) {
      clearTimeout(timer);
      callback(error);
    },
  });

  /**
   * Emits the partial batch once its first item is old enough, unless the batches already
   * emitted still wait for the writer. Pushing then would bypass backpressure: with a slow
   * writer and a trickle of items, every tick would add a batch to the buffer. Instead the
   * batch keeps filling, and the age is checked again later.
   */
  function emitAgedBatch(): void {
    timer = undefined;

    if (stage.readableLength >= stage.readableHighWaterMark) {
      timer = setTimeout(emitAgedBatch, options.maxAgeMs);

      return;
    }

    emitPending();
  }

  function emitPending(): void {
    clearTimeout(timer);
    timer = undefined;

    if (pending.length > 0) {
      const batch = pending;

      pending = [];
      pendingBytes = 0;
      stage.push(batch);
    }
  }

  return stage;
}

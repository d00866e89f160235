import { Transform, type TransformCallback } from 'node:stream';

export type BatchOptions = {
  /** Items per batch at most. */
  maxItems: number;
  /** Milliseconds the first item of a partial batch waits before the batch is emitted. */
  maxAgeMs: number;
};

/**
 * Transform stage that groups items into arrays of at most `maxItems`, emitting a partial
 * batch once its first item is `maxAgeMs` old, so a quiet queue still commits promptly.
 */
export function createBatchTransform<T>(options: BatchOptions): Transform {
  let pending: T[] = [];
  let timer: NodeJS.Timeout | undefined;

  const stage = new Transform({
    objectMode: true,
    // Room for two batches: one being filled, one waiting for the writer.
    readableHighWaterMark: 2,
    writableHighWaterMark: options.maxItems,
    transform(item: T, _encoding, callback: TransformCallback) {
      pending.push(item);

      if (pending.length >= options.maxItems) {
        emitPending();
      } else if (timer === undefined) {
        timer = setTimeout(emitPending, options.maxAgeMs);
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

  function emitPending(): void {
    clearTimeout(timer);
    timer = undefined;

    if (pending.length > 0) {
      const batch = pending;

      pending = [];
      stage.push(batch);
    }
  }

  return stage;
}

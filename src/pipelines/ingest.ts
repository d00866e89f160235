import type { SQSClient } from '@aws-sdk/client-sqs';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import type { RecordType } from '../avro.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { createPostgresCopySink } from '../sinks/postgres-copy.ts';
import { createSqsDeleteSink, type IngestCounts } from '../sinks/sqs-delete.ts';
import { createSqsSource } from '../sources/sqs.ts';
import { VisibilityKeeper } from '../sources/sqs-visibility.ts';
import { createAvroDecodeTransform, type DecodedMessage } from '../transforms/avro-decode.ts';
import { createBatchTransform } from '../transforms/batch.ts';

export type IngestOptions = {
  config: Config;
  logger: Logger;
  sqs: SQSClient;
  /** Needs at least `config.ingest.copyConnections` connections. */
  pool: pg.Pool;
  recordType: RecordType;
  queueUrl: string;
  /** Finish once a receive finds the queue empty, instead of polling until stopped. */
  stopWhenEmpty?: boolean;
  /** Aborting it stops the ingest gracefully; see runIngest. */
  signal?: AbortSignal;
  /** Largest pause between retries of a failed receive or database write; 30 s by default. */
  maxRetryDelayMs?: number;
};

/**
 * Runs ingest: SQS source → Avro decode → batch → COPY sink → SQS delete. When `signal`
 * aborts, no new receive starts and in-flight batches get `shutdownGraceSeconds` to commit and
 * delete. After that the pipeline is torn down, and every message not yet deleted is made
 * visible again at once.
 */
export async function runIngest(options: IngestOptions): Promise<IngestCounts> {
  const { config, logger, sqs, queueUrl } = options;
  const visibility = new VisibilityKeeper({
    sqs,
    queueUrl,
    visibilityTimeoutSeconds: config.sqs.visibilityTimeoutSeconds,
    logger,
  });
  const source = createSqsSource({
    sqs,
    queueUrl,
    receiveConcurrency: config.sqs.receiveConcurrency,
    waitTimeSeconds: config.sqs.waitTimeSeconds,
    visibilityTimeoutSeconds: config.sqs.visibilityTimeoutSeconds,
    visibility,
    logger,
    stopWhenEmpty: options.stopWhenEmpty,
    maxRetryDelayMs: options.maxRetryDelayMs,
  });
  const teardown = new AbortController();
  // One DeleteMessageBatch clears what one receive brought in, so deletes keep as many calls
  // in flight as receives do. With fewer, slow calls would cap the ingest at the delete side.
  const sink = createSqsDeleteSink({
    sqs,
    queueUrl,
    visibility,
    logger,
    concurrency: config.sqs.receiveConcurrency,
  });
  const stopGracefully = () => {
    source.stop();
    setTimeout(() => teardown.abort(), config.ingest.shutdownGraceSeconds * 1000).unref();
  };

  options.signal?.addEventListener('abort', stopGracefully, { once: true });

  if (options.signal?.aborted) {
    stopGracefully();
  }

  visibility.start();

  try {
    await pipeline(
      source,
      createAvroDecodeTransform(options.recordType),
      createBatchTransform({
        maxItems: config.ingest.batchSize,
        maxBytes: config.ingest.batchMaxBytes,
        maxAgeMs: config.ingest.batchMaxAgeMs,
        sizeOf: (decoded: DecodedMessage) => decoded.message.body.length,
      }),
      createPostgresCopySink({
        pool: options.pool,
        concurrency: config.ingest.copyConnections,
        logger,
        signal: teardown.signal,
        maxRetryDelayMs: options.maxRetryDelayMs,
      }),
      sink,
      { signal: teardown.signal },
    );
  } catch (error) {
    // Teardown at the end of the grace period is part of a shutdown, not a failure.
    if (!teardown.signal.aborted) {
      throw error;
    }

    logger.warn(
      { stage: 'ingest', graceSeconds: config.ingest.shutdownGraceSeconds },
      'grace period ended before in-flight batches committed; releasing their messages',
    );
  } finally {
    options.signal?.removeEventListener('abort', stopGracefully);
    visibility.stop();
    await visibility.releaseAll();
  }

  return sink.counts;
}

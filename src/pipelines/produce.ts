import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { loadRecordType } from '../avro.ts';
import { requireSetting, type Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { createSqsSendSink } from '../sinks/sqs-send.ts';
import { createComplaintCsvSource } from '../sources/complaint-csv.ts';
import { createAvroEncodeTransform } from '../transforms/avro-encode.ts';

/** Options of {@link produce}. */
export type ProduceOptions = {
  config: Config;
  logger: Logger;
  sqs: SQSClient;
  /** Aborting it tears down the file being sent, and files not started yet are skipped. */
  signal?: AbortSignal;
};

/** Messages sent for one input file. */
export type ProducedFile = { file: string; messageCount: number };

/**
 * Sends every row of the given complaint CSV files to the queue at SQS_QUEUE_URL, one Avro
 * message per row, one file after the other. A folder stands for its `*.csv` files in name
 * order. Every path is resolved before the first message goes out, so a missing file fails
 * the call without sending anything. Returns the message count per file, in the order sent.
 */
export async function produce(paths: string[], options: ProduceOptions): Promise<ProducedFile[]> {
  const { config, sqs, signal } = options;
  // Stages bind their own `stage` field, so they get the parent logger, not this child.
  const logger = options.logger.child({ stage: 'produce' });
  const queueUrl = requireSetting(
    config.sqs.queueUrl,
    'SQS_QUEUE_URL',
    'SQS_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123456789012/reclamacoes',
  );
  const recordType = await loadRecordType(config.ingest.schemaPath);
  const files = await listCsvFiles(paths);
  const results: ProducedFile[] = [];

  logger.info({ queueUrl, fileCount: files.length }, 'produce started');

  for (const file of files) {
    signal?.throwIfAborted();

    const sink = createSqsSendSink({
      sqs,
      queueUrl,
      concurrency: config.sqs.sendConcurrency,
      logger: options.logger,
    });

    try {
      await pipeline(
        createComplaintCsvSource(file, { recordType, logger: options.logger }),
        createAvroEncodeTransform({ recordType }),
        sink,
        { signal },
      );
    } catch (error) {
      throw withSentFiles(error, results, file, sink.messageCount);
    }

    logger.debug({ file, messageCount: sink.messageCount }, 'file sent');
    results.push({ file, messageCount: sink.messageCount });
  }

  const messageCount = results.reduce((sum, result) => sum + result.messageCount, 0);

  logger.info({ queueUrl, fileCount: files.length, messageCount }, 'produce finished');

  return results;
}

/**
 * Adds to a failure's message what was already sent, so that a rerun can leave those files
 * out: the queue has their messages, and sending them again would store them twice.
 */
function withSentFiles(
  error: unknown,
  sent: ProducedFile[],
  failedFile: string,
  failedCount: number,
): unknown {
  if (!(error instanceof Error) || (sent.length === 0 && failedCount === 0)) {
    return error;
  }

  const parts = sent.map((result) => `${result.file} (${result.messageCount} messages)`);

  if (failedCount > 0) {
    parts.push(`${failedCount} messages of ${failedFile}`);
  }

  error.message += `; already sent before the failure: ${parts.join(', ')}`;

  return error;
}

/** Expands each folder into its `*.csv` files, sorted by name. Other paths stay as given. */
async function listCsvFiles(paths: string[]): Promise<string[]> {
  const files: string[] = [];

  for (const path of paths) {
    const stats = await stat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        throw new Error(`file not found: ${path}; check the path`, { cause: error });
      }

      throw error;
    });

    if (!stats.isDirectory()) {
      files.push(path);

      continue;
    }

    const names = await readdir(path);
    const csvNames = names.filter((name) => name.toLowerCase().endsWith('.csv')).sort();

    files.push(...csvNames.map((name) => join(path, name)));
  }

  return files;
}

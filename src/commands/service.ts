import { setTimeout as sleep } from 'node:timers/promises';
import { loadRecordType, type RecordType } from '../avro.ts';
import {
  ConfigError,
  parsePipelineList,
  requireSetting,
  type Config,
  type PipelineName,
} from '../config.ts';
import type { Logger } from '../logger.ts';
import { runExport } from '../pipelines/export.ts';
import { runIngest } from '../pipelines/ingest.ts';
import { loadReference } from '../pipelines/load-reference.ts';
import { produce } from '../pipelines/produce.ts';
import { openContext, type CommandContext } from './context.ts';

const QUEUE_URL_EXAMPLE = 'https://sqs.us-east-1.amazonaws.com/123456789012/reclamacoes';
const BUCKET_EXAMPLE = 'my-delivery-bucket';

/** Exit status after a second SIGINT or SIGTERM cut a shutdown short. */
const FORCED_EXIT_CODE = 130;

/**
 * Opens the clients, runs `work` and closes them. A `signal` aborted while start-up waits for
 * PostgreSQL ends the command with status 0, as a shutdown.
 */
async function withContext(
  config: Config,
  logger: Logger,
  work: (context: CommandContext) => Promise<number>,
  signal?: AbortSignal,
): Promise<number> {
  let context: CommandContext;

  try {
    context = await openContext(config, logger, signal);
  } catch (error) {
    if (signal?.aborted && (error as Error).name === 'AbortError') {
      logger.info({}, 'stopped before PostgreSQL accepted connections');

      return 0;
    }

    throw error;
  }

  try {
    return await work(context);
  } finally {
    await context.close();
  }
}

function countMessages(count: number): string {
  return count === 1 ? '1 message' : `${count} messages`;
}

/** `migrate`: ensures the schemas and tables. */
export async function runMigrate(config: Config, logger: Logger): Promise<number> {
  return withContext(config, logger, async () => {
    process.stdout.write('schemas events and trusted are ready\n');

    return 0;
  });
}

/** `load-reference`: replaces the bank and employer tables. */
export async function runLoadReference(
  config: Config,
  logger: Logger,
  paths: { bancosPath: string; empregadosPaths: string[] },
): Promise<number> {
  return withContext(config, logger, async ({ pool }) => {
    const counts = await loadReference(pool, paths, logger);

    process.stdout.write(
      `trusted.bancos: ${counts.bancoCount} rows\ntrusted.empregados: ${counts.empregadoCount} rows\n`,
    );

    return 0;
  });
}

/** `produce`: sends complaint CSV rows to the queue. */
export async function runProduce(config: Config, logger: Logger, paths: string[]): Promise<number> {
  requireSetting(config.sqs.queueUrl, 'SQS_QUEUE_URL', QUEUE_URL_EXAMPLE);

  return withContext(config, logger, async ({ sqs }) => {
    const results = await produce(paths, { config, logger, sqs });

    for (const result of results) {
      process.stdout.write(`${result.file}: ${countMessages(result.messageCount)} sent\n`);
    }

    const total = results.reduce((sum, result) => sum + result.messageCount, 0);

    process.stdout.write(`total: ${countMessages(total)} sent\n`);

    return 0;
  });
}

/** `export`: one export now; the URI is the last line of standard output. */
export async function runExportCommand(config: Config, logger: Logger): Promise<number> {
  const bucket = requireSetting(config.s3.bucket, 'S3_BUCKET_NAME', BUCKET_EXAMPLE);

  return withContext(config, logger, async ({ pool, s3 }) => {
    const result = await runExport({ config, logger, pool, s3, bucket });

    process.stdout.write(`${result.rowCount} rows, ${result.sizeBytes} bytes\n${result.uri}\n`);

    return 0;
  });
}

function selectPipelines(config: Config, override: string | undefined): PipelineName[] {
  if (override === undefined) {
    return config.pipelines;
  }

  const names = parsePipelineList(override);
  const unknownNames = names.filter((name) => name !== 'ingest' && name !== 'export');

  if (names.length === 0 || unknownNames.length > 0) {
    throw new ConfigError(
      `invalid --pipelines "${override}": use a comma-separated list of ingest, export`,
    );
  }

  return names as PipelineName[];
}

/**
 * `run`: runs the selected pipelines until SIGINT or SIGTERM. The first signal stops them
 * gracefully and the process exits 0; a second one exits at once.
 */
export async function runService(
  config: Config,
  logger: Logger,
  options: { pipelines?: string; untilEmpty?: boolean },
): Promise<number> {
  const pipelines = selectPipelines(config, options.pipelines);
  const queueUrl = pipelines.includes('ingest')
    ? requireSetting(config.sqs.queueUrl, 'SQS_QUEUE_URL', QUEUE_URL_EXAMPLE)
    : '';
  const bucket = pipelines.includes('export')
    ? requireSetting(config.s3.bucket, 'S3_BUCKET_NAME', BUCKET_EXAMPLE)
    : '';
  const recordType = pipelines.includes('ingest')
    ? await loadRecordType(config.ingest.schemaPath)
    : undefined;
  const shutdown = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (shutdown.signal.aborted) {
      logger.warn({ signal }, 'second signal, exiting at once');
      process.exit(FORCED_EXIT_CODE);
    }

    logger.info({ signal }, 'shutdown requested');
    shutdown.abort();
  };

  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    return await withContext(config, logger, async (context) => {
      logger.info({ pipelines }, 'service started');

      if (options.untilEmpty) {
        return await drainThenExport(context, { recordType, queueUrl, bucket }, shutdown.signal);
      }

      const running: Array<Promise<unknown>> = [];

      if (recordType !== undefined) {
        running.push(
          runIngest({ ...context, recordType, queueUrl, signal: shutdown.signal }).then((counts) => {
            logger.info({ stage: 'ingest', ...counts }, 'ingest stopped');
          }),
        );
      }

      if (bucket !== '') {
        running.push(runExportSchedule(context, bucket, shutdown.signal));
      }

      // One pipeline failing for good stops the other as well; its error surfaces once both end.
      const outcomes = await Promise.allSettled(
        running.map((task) =>
          task.catch((error: unknown) => {
            shutdown.abort();
            throw error;
          }),
        ),
      );
      const failure = outcomes.find((outcome) => outcome.status === 'rejected');

      if (failure) {
        throw failure.reason;
      }

      logger.info({}, 'service stopped');

      return 0;
    }, shutdown.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Ingests until the queue is empty, then runs one export; either part may be left out. */
async function drainThenExport(
  context: CommandContext,
  target: { recordType: RecordType | undefined; queueUrl: string; bucket: string },
  signal: AbortSignal,
): Promise<number> {
  const { logger } = context;

  if (target.recordType !== undefined) {
    const counts = await runIngest({
      ...context,
      recordType: target.recordType,
      queueUrl: target.queueUrl,
      stopWhenEmpty: true,
      signal,
    });

    logger.info({ stage: 'ingest', ...counts }, 'queue drained');
  }

  if (target.bucket !== '' && !signal.aborted) {
    const result = await runExport({ ...context, bucket: target.bucket, signal });

    process.stdout.write(`${result.uri}\n`);
  }

  logger.info({}, 'service stopped');

  return 0;
}

/** Runs an export every EXPORT_INTERVAL_SECONDS; a failed run is logged and retried next time. */
async function runExportSchedule(
  context: CommandContext,
  bucket: string,
  signal: AbortSignal,
): Promise<void> {
  const { config, logger } = context;
  const intervalMs = config.export.intervalSeconds * 1000;

  while (!signal.aborted) {
    try {
      await runExport({ ...context, bucket, signal });
    } catch (error) {
      if (signal.aborted) {
        break;
      }

      logger.error(
        { err: error, stage: 'export', retryInSeconds: config.export.intervalSeconds },
        'export failed',
      );
    }

    await sleep(intervalMs, undefined, { signal }).catch(() => {});
  }
}

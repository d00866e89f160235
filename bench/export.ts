/**
 * Export benchmark: `npm run bench -- export [options]`. It fills the events table and the
 * trusted tables with synthetic rows of the published shapes, sized so that the delivery query
 * returns about `--rows` rows. Then it times one export into the emulator's S3. The emulator
 * runs in a child process and the export in another. It prints rows/s, the bytes written, the
 * time of each stage, peak RSS, CPU time and the peak temporary disk use. It checks that the
 * object exists, that the row count is right and that no temporary file is left.
 *
 * Options:
 *   --rows N             report rows (default 1,000,000)
 *   --scaling            100,000, 1,000,000 and 5,000,000 rows
 *   --variant SETTINGS   export once more with these settings, such as
 *                        DUCKDB_MEMORY_LIMIT=128MB,EXPORT_CURSOR_BATCH_ROWS=1000, on the same
 *                        data; repeatable, so that settings are compared in one invocation
 *   --repeat N           run the default and every variant N times, interleaved (default 1)
 *   --timeline           print each export's RSS, V8 heap and external memory once a second
 *   --cpu-prof-dir DIR   write a V8 CPU profile of each export's process to DIR
 * The tool's settings (EXPORT_CURSOR_BATCH_ROWS, PARQUET_ROW_GROUP_ROWS, DUCKDB_MEMORY_LIMIT,
 * S3_PART_SIZE_BYTES, S3_UPLOAD_CONCURRENCY) from the environment apply to every export.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CreateBucketCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../src/aws.ts';
import { fillDeliveryData, type DeliveryData } from './helpers/delivery-data.ts';
import {
  describeMachine,
  describeNodeOptions,
  startBenchEnvironment,
  type BenchEnvironment,
} from './helpers/environment.ts';
import type { ExportWorkerResult } from './helpers/export-worker.ts';
import {
  formatCount,
  formatMiB,
  formatSeconds,
  formatTable,
  formatTimeline,
} from './helpers/format.ts';
import { readProcessTreeCpuMs } from './helpers/measure.ts';
import { formatVariant, parseCount, parseVariant } from './helpers/options.ts';
import { runWorker } from './helpers/processes.ts';

const WORKER_SCRIPT = new URL('./helpers/export-worker.ts', import.meta.url);

const DEFAULT_ROWS = 1_000_000;

const SCALING_ROWS = [100_000, 1_000_000, 5_000_000];

/** An export fails when it is slower than this, a bound far below every rate measured. */
const MIN_ROWS_PER_SECOND = 2_000;

const WORKER_START_ALLOWANCE_MS = 60_000;

type ExportReport = ExportWorkerResult & {
  data: DeliveryData;
  settings: Record<string, string>;
  postgresCpuMs: number | undefined;
  emulatorCpuMs: number | undefined;
};

function difference(after: number | undefined, before: number | undefined): number | undefined {
  return after === undefined || before === undefined ? undefined : after - before;
}

/** Fills the tables so that the delivery query returns about `rows` rows, for every export. */
async function fillTables(environment: BenchEnvironment, rows: number): Promise<DeliveryData> {
  process.stderr.write(`bench: export: filling the tables for ${formatCount(rows)} report rows\n`);

  const data = await fillDeliveryData(environment.database.pool, rows);

  await environment.database.pool.query('CHECKPOINT');

  return data;
}

/** Runs one export of the filled tables with extra settings and checks what it wrote. */
async function runOnce(
  environment: BenchEnvironment,
  data: DeliveryData,
  settings: Record<string, string>,
  nodeFlags: string[],
): Promise<ExportReport> {
  const { config, emulator, postgresPid } = environment;
  const bucket = `bench-export-${randomBytes(4).toString('hex')}`;
  const s3 = createS3Client(config);
  const tempFolder = await mkdtemp(join(tmpdir(), 'sqs-pg-parquet-bench-'));

  try {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));

    const postgresCpuBefore =
      postgresPid === undefined ? undefined : readProcessTreeCpuMs(postgresPid);
    const emulatorCpuBefore = readProcessTreeCpuMs(emulator.pid);

    process.stderr.write(
      `bench: ${formatVariant('export', settings)}: ` +
        `running on ${formatCount(data.eventCount)} events\n`,
    );

    const result = await runWorker<ExportWorkerResult>(
      WORKER_SCRIPT,
      {},
      {
        timeoutMs: WORKER_START_ALLOWANCE_MS + (data.expectedRowCount / MIN_ROWS_PER_SECOND) * 1000,
        env: environment.workerEnv(emulator.endpointUrl, {
          S3_BUCKET_NAME: bucket,
          TMPDIR: tempFolder,
          ...settings,
        }),
        nodeFlags,
      },
    );

    await checkResult(s3, result, data);

    return {
      ...result,
      data,
      settings,
      postgresCpuMs:
        postgresPid === undefined
          ? undefined
          : difference(readProcessTreeCpuMs(postgresPid), postgresCpuBefore),
      emulatorCpuMs: difference(readProcessTreeCpuMs(emulator.pid), emulatorCpuBefore),
    };
  } finally {
    s3.destroy();
    await rm(tempFolder, { recursive: true, force: true });
  }
}

/** Fails the benchmark unless the object is in S3 with all its rows and nothing is left on disk. */
async function checkResult(
  s3: ReturnType<typeof createS3Client>,
  result: ExportWorkerResult,
  data: DeliveryData,
): Promise<void> {
  const head = await s3.send(
    new HeadObjectCommand({ Bucket: result.export.bucket, Key: result.export.key }),
  );

  if (head.ContentLength !== result.export.sizeBytes) {
    throw new Error(
      `export wrote ${result.export.sizeBytes} bytes but s3://${result.export.bucket}/` +
        `${result.export.key} has ${head.ContentLength}`,
    );
  }

  if (result.export.rowCount !== data.expectedRowCount) {
    throw new Error(
      `export wrote ${result.export.rowCount} rows, expected ${data.expectedRowCount}`,
    );
  }

  if (result.leftTempBytes !== 0) {
    throw new Error(`export left ${result.leftTempBytes} bytes of temporary files behind`);
  }
}

function formatReports(reports: ExportReport[]): string {
  const rows = reports.map((report) => {
    const { durationsMs } = report.export;

    return [
      formatVariant('export', report.settings),
      formatCount(report.export.rowCount),
      formatCount(report.data.eventCount),
      formatSeconds(durationsMs.total),
      formatCount(report.export.rowCount / (durationsMs.total / 1000)),
      formatSeconds(durationsMs.query),
      formatSeconds(durationsMs.parquet),
      formatSeconds(durationsMs.upload),
      formatMiB(report.export.sizeBytes),
      formatMiB(report.measurement.peakRssBytes),
      formatMiB(report.measurement.maxRssBytes),
      formatMiB(report.peakTempBytes),
      formatSeconds(report.measurement.cpuMs),
      formatSeconds(report.postgresCpuMs),
    ];
  });

  return formatTable(
    [
      'run',
      'rows',
      'events',
      'seconds',
      'rows/s',
      'query s',
      'parquet s',
      'upload s',
      'Parquet MiB',
      'peak RSS MiB',
      'max RSS MiB',
      'peak temp MiB',
      'CPU s',
      'PostgreSQL CPU s',
    ],
    rows,
  );
}

/** Runs the export benchmark with the given command-line arguments. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      rows: { type: 'string', default: String(DEFAULT_ROWS) },
      scaling: { type: 'boolean', default: false },
      variant: { type: 'string', multiple: true },
      repeat: { type: 'string', default: '1' },
      timeline: { type: 'boolean', default: false },
      'cpu-prof-dir': { type: 'string' },
    },
  });
  const variants = [{}, ...(values.variant ?? []).map(parseVariant)];
  const repeat = parseCount('--repeat', values.repeat, 1);
  const profileDir = values['cpu-prof-dir'];
  const nodeFlags = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  const sizes = values.scaling ? SCALING_ROWS : [parseCount('--rows', values.rows, 1)];
  const environment = await startBenchEnvironment();

  try {
    const { config } = environment;

    process.stdout.write(
      [
        describeMachine(),
        describeNodeOptions(environment),
        `settings: EXPORT_CURSOR_BATCH_ROWS=${config.export.cursorBatchRows} ` +
          `PARQUET_ROW_GROUP_ROWS=${config.export.rowGroupRows} ` +
          `DUCKDB_MEMORY_LIMIT=${config.export.duckdbMemoryLimit} ` +
          `S3_PART_SIZE_BYTES=${config.s3.partSizeBytes} ` +
          `S3_UPLOAD_CONCURRENCY=${config.s3.uploadConcurrency}`,
        '',
      ].join('\n'),
    );

    const reports: ExportReport[] = [];

    for (const rows of sizes) {
      const data = await fillTables(environment, rows);

      for (let round = 0; round < repeat; round += 1) {
        for (const settings of variants) {
          reports.push(await runOnce(environment, data, settings, nodeFlags));
        }
      }
    }

    process.stdout.write(`${formatReports(reports)}\n`);

    if (values.timeline) {
      for (const report of reports) {
        process.stdout.write(
          `\nMemory of the ${formatVariant('export', report.settings)} process of ` +
            `${formatCount(report.export.rowCount)} rows:\n` +
            `${formatTimeline(report.measurement.samples)}\n`,
        );
      }
    }
  } finally {
    await environment.stop();
  }
}

/**
 * Ingest benchmark: `npm run bench -- ingest [options]`. It fills a queue in the emulator,
 * which runs in a child process, with real-shaped complaint messages, then times three runs,
 * each in a process of its own, from start until the queue is empty and the rows committed:
 *
 * - tool: the ingest pipeline (runIngest with stopWhenEmpty);
 * - baseline: the design the tool replaced. It receives ten messages with long polling, then
 *   decodes, INSERTs and deletes (DeleteMessage) each of them at once, and receives again
 *   once all ten are done;
 * - limit: receive and DeleteMessageBatch only, at the tool's receive concurrency, with no
 *   decoding and no database: what the emulator and one SDK client sustain.
 *
 * Options:
 *   --messages N            messages of the tool and limit runs (default 20,000)
 *   --baseline-messages N   messages of the baseline run (default min(N, 5,000))
 *   --runs LIST             which of tool,baseline,limit to run (default all three)
 *   --sqs-latency-ms N      put a TCP proxy between the runs and the emulator that delays
 *                           each forwarded chunk by N ms, in both directions
 *   --max-depth N           preload only N messages and send the rest during the run, so the
 *                           queue never holds more than N
 *   --scaling               the tool and the limit at 10,000, 100,000 and 1,000,000 messages,
 *                           fed with --max-depth (default 10,000)
 *   --lock-ms N             lock the events table for N ms during a tool run on a full queue,
 *   --lock-after-ms N       starting N ms after the start (default 2,000), stop the run 10 s
 *                           after the unlock, and print its RSS once a second
 *   --variant SETTINGS      run the tool once more with these settings, such as
 *                           SQS_RECEIVE_CONCURRENCY=16,COPY_CONNECTIONS=4; repeatable, so
 *                           that settings are compared within one invocation
 *   --repeat N              run the whole list N times, interleaved, and add a table of the
 *                           median of each run (default 1)
 *   --cpu-prof-dir DIR      write a V8 CPU profile of each run's process to DIR
 * The tool's settings (SQS_RECEIVE_CONCURRENCY, COPY_BATCH_SIZE, ...) from the environment
 * apply to every run. BENCH_SQS_THREADS=N, in the environment or a --variant, makes the tool
 * and limit runs send their SQS calls from N worker threads (an experiment: BENCHMARKS.md).
 */
import { parseArgs } from 'node:util';
import { loadRecordType } from '../src/avro.ts';
import { createLogger } from '../src/logger.ts';
import { startTcpProxy } from '../test/helpers/tcp-proxy.ts';
import { loadComplaintRecords, type ComplaintRecords } from './helpers/complaint-messages.ts';
import {
  describeMachine,
  describeNodeOptions,
  startBenchEnvironment,
  type BenchEnvironment,
} from './helpers/environment.ts';
import {
  formatCount,
  formatMiB,
  formatRatio,
  formatSeconds,
  formatTable,
  formatTimeline,
} from './helpers/format.ts';
import {
  IngestBench,
  type Endpoint,
  type RunPlan,
  type RunReport,
} from './helpers/ingest-bench.ts';
import type { IngestMode } from './helpers/ingest-worker.ts';
import { formatVariant, median, parseCount, parseVariant } from './helpers/options.ts';

/** Complaint CSVs published by the central bank, kept beside the repository when available. */
const REAL_DATA_FOLDER = new URL('../../shared/data/reclamacoes/', import.meta.url);

const DEFAULT_MESSAGES = 20_000;

/** The baseline's rate is steady, so this many messages measure it without a long wait. */
const DEFAULT_BASELINE_MESSAGES = 5_000;

const SCALING_MESSAGES = [10_000, 100_000, 1_000_000];

/**
 * Queue depth of the scaling runs. The emulator (fauxqs 1.9.2) keeps a queue in one array and
 * takes each received message from its front with Array.shift. On Node.js 20 a shift took
 * about 2 µs on 15,000 entries, 0.2 ms on 100,000 and 2 ms on 1,000,000, so deeper queues
 * would time the emulator instead of the ingest.
 */
const SCALING_MAX_DEPTH = 10_000;

/** A lock run goes on this long after the unlock, then stops. */
const LOCK_RUN_TAIL_MS = 10_000;

const RUN_NAMES: IngestMode[] = ['tool', 'baseline', 'limit'];

type IngestOptions = {
  messages: number;
  baselineMessages: number;
  sqsLatencyMs: number;
  runs: IngestMode[];
  maxDepth: number | undefined;
  isScaling: boolean;
  lockMs: number;
  lockAfterMs: number;
  variants: Array<Record<string, string>>;
  repeat: number;
  cpuProfileDir: string | undefined;
};

function parseOptions(args: string[]): IngestOptions {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      messages: { type: 'string', default: String(DEFAULT_MESSAGES) },
      'baseline-messages': { type: 'string' },
      runs: { type: 'string', default: RUN_NAMES.join(',') },
      'sqs-latency-ms': { type: 'string', default: '0' },
      'max-depth': { type: 'string' },
      scaling: { type: 'boolean', default: false },
      'lock-ms': { type: 'string', default: '0' },
      'lock-after-ms': { type: 'string', default: '2000' },
      variant: { type: 'string', multiple: true },
      repeat: { type: 'string', default: '1' },
      'cpu-prof-dir': { type: 'string' },
    },
  });
  const messages = parseCount('--messages', values.messages, 1);
  const runs = (values.runs ?? '').split(',').map((name) => name.trim());

  if (runs.some((name) => !RUN_NAMES.includes(name as IngestMode))) {
    throw new Error(
      `invalid --runs "${values.runs}": use a comma-separated list of ${RUN_NAMES.join(', ')}`,
    );
  }

  return {
    messages,
    baselineMessages: values['baseline-messages']
      ? parseCount('--baseline-messages', values['baseline-messages'], 1)
      : Math.min(messages, DEFAULT_BASELINE_MESSAGES),
    sqsLatencyMs: parseCount('--sqs-latency-ms', values['sqs-latency-ms'], 0),
    runs: runs as IngestMode[],
    maxDepth:
      values['max-depth'] === undefined
        ? undefined
        : parseCount('--max-depth', values['max-depth'], 10),
    isScaling: values.scaling ?? false,
    lockMs: parseCount('--lock-ms', values['lock-ms'], 0),
    lockAfterMs: parseCount('--lock-after-ms', values['lock-after-ms'], 0),
    variants: (values.variant ?? []).map(parseVariant),
    repeat: parseCount('--repeat', values.repeat, 1),
    cpuProfileDir: values['cpu-prof-dir'],
  };
}

async function openEndpoint(emulatorUrl: string, latencyMs: number): Promise<Endpoint> {
  if (latencyMs === 0) {
    return { url: emulatorUrl, close: async () => {} };
  }

  const target = new URL(emulatorUrl);
  const proxy = await startTcpProxy({
    targetHost: target.hostname,
    targetPort: Number(target.port),
    delayMs: latencyMs,
  });

  return { url: `http://127.0.0.1:${proxy.port}`, close: () => proxy.stop() };
}

function messagesPerSecond(report: RunReport): number {
  return report.deletedCount / (report.measurement.durationMs / 1000);
}

/** Names a run by its mode and the settings of its variant, if any. */
function runLabel(report: RunReport): string {
  return formatVariant(report.mode, report.plan.settings);
}

function formatReports(reports: RunReport[]): string {
  const rows = reports.map((report) => [
    runLabel(report),
    formatCount(report.deletedCount),
    report.plan.maxDepth === undefined
      ? 'preloaded'
      : `fed, max ${formatCount(report.plan.maxDepth)}`,
    String(report.receiveConcurrency),
    formatSeconds(report.measurement.durationMs),
    formatCount(messagesPerSecond(report)),
    formatMiB(report.measurement.peakRssBytes),
    formatSeconds(report.measurement.cpuMs),
    formatSeconds(report.emulatorCpuMs),
    formatSeconds(report.postgresCpuMs),
  ]);

  return formatTable(
    [
      'run',
      'messages',
      'queue',
      'receives in flight',
      'seconds',
      'messages/s',
      'peak RSS MiB',
      'CPU s',
      'emulator CPU s',
      'PostgreSQL CPU s',
    ],
    rows,
  );
}

/** Median rate of each run label, in the order the labels first appear. */
function medianRates(reports: RunReport[]): Map<string, number> {
  const ratesByLabel = new Map<string, number[]>();

  for (const report of reports) {
    ratesByLabel.set(runLabel(report), [
      ...(ratesByLabel.get(runLabel(report)) ?? []),
      messagesPerSecond(report),
    ]);
  }

  return new Map([...ratesByLabel].map(([label, rates]) => [label, median(rates)]));
}

/**
 * Formats each tool run's rate divided by the baseline's and the limit's, as medians when runs
 * were repeated.
 */
function formatRatios(reports: RunReport[]): string {
  const rates = medianRates(reports);
  const lines: string[] = [];

  for (const [toolLabel, toolRate] of [...rates].filter(([label]) => label.startsWith('tool'))) {
    for (const [otherLabel, otherRate] of [...rates].filter(
      ([label]) => !label.startsWith('tool'),
    )) {
      lines.push(`${toolLabel} / ${otherLabel}: ${formatRatio(toolRate / otherRate)}`);
    }
  }

  return lines.join('\n');
}

function formatMedians(reports: RunReport[]): string {
  const rows = [...medianRates(reports)].map(([label, rate]) => [label, formatCount(rate)]);

  return formatTable(['run', 'median messages/s'], rows);
}

function formatHeader(
  options: IngestOptions,
  input: ComplaintRecords,
  environment: BenchEnvironment,
): string {
  const { config } = environment;

  return [
    describeMachine(),
    describeNodeOptions(environment),
    `input: ${formatCount(input.records.length)} complaint rows from ${input.folder}, cycled`,
    `added SQS latency: ${options.sqsLatencyMs} ms before each forwarded chunk, both ways`,
    `settings: SQS_RECEIVE_CONCURRENCY=${config.sqs.receiveConcurrency} ` +
      `COPY_BATCH_SIZE=${config.ingest.batchSize} ` +
      `COPY_BATCH_MAX_BYTES=${config.ingest.batchMaxBytes} ` +
      `COPY_BATCH_MAX_AGE_MS=${config.ingest.batchMaxAgeMs} ` +
      `COPY_CONNECTIONS=${config.ingest.copyConnections}`,
    '',
  ].join('\n');
}

/** Runs the tool on a full queue while the events table is locked for a while. */
async function runLocked(bench: IngestBench, options: IngestOptions): Promise<string> {
  const report = await bench.run({
    mode: 'tool',
    messageCount: options.messages,
    stopAfterMs: options.lockAfterMs + options.lockMs + LOCK_RUN_TAIL_MS,
    lock: { afterMs: options.lockAfterMs, forMs: options.lockMs },
  });

  return [
    formatReports([report]),
    '',
    `stopped after ${formatSeconds(report.measurement.durationMs)} s with ` +
      `${formatCount(report.leftCount)} messages left in the queue`,
    `RSS of the tool's process; the events table was locked from ` +
      `${formatSeconds(options.lockAfterMs)} s ` +
      `to ${formatSeconds(options.lockAfterMs + options.lockMs)} s:`,
    formatTimeline(report.measurement.samples),
  ].join('\n');
}

async function runScaling(bench: IngestBench, options: IngestOptions): Promise<string> {
  const reports: RunReport[] = [];

  for (const messageCount of SCALING_MESSAGES) {
    for (const mode of options.runs.filter((name) => name !== 'baseline')) {
      reports.push(
        await bench.run({ mode, messageCount, maxDepth: options.maxDepth ?? SCALING_MAX_DEPTH }),
      );
    }
  }

  return formatReports(reports);
}

async function runComparison(bench: IngestBench, options: IngestOptions): Promise<string> {
  const reports: RunReport[] = [];

  for (let round = 0; round < options.repeat; round += 1) {
    for (const mode of options.runs) {
      const messageCount = mode === 'baseline' ? options.baselineMessages : options.messages;

      reports.push(await bench.run({ mode, messageCount, maxDepth: options.maxDepth }));
    }

    for (const settings of options.variants) {
      reports.push(
        await bench.run({
          mode: 'tool',
          messageCount: options.messages,
          maxDepth: options.maxDepth,
          settings,
        }),
      );
    }
  }

  const medians = options.repeat > 1 ? `\n\n${formatMedians(reports)}` : '';

  return `${formatReports(reports)}${medians}\n\n${formatRatios(reports)}`;
}

/** Runs the ingest benchmark with the given command-line arguments. */
export async function main(args: string[]): Promise<void> {
  const options = parseOptions(args);
  const logger = createLogger(process.env.LOG_LEVEL ?? 'warn');
  const environment = await startBenchEnvironment();
  let endpoint: Endpoint | undefined;
  let bench: IngestBench | undefined;

  try {
    endpoint = await openEndpoint(environment.emulator.endpointUrl, options.sqsLatencyMs);

    const recordType = await loadRecordType(environment.config.ingest.schemaPath);
    const input = await loadComplaintRecords(REAL_DATA_FOLDER, recordType, logger);
    const nodeFlags =
      options.cpuProfileDir === undefined
        ? []
        : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`];

    bench = new IngestBench({ environment, input, recordType, endpoint, logger, nodeFlags });
    process.stdout.write(formatHeader(options, input, environment));
    process.stdout.write(`${await runSelected(bench, options)}\n`);
  } finally {
    bench?.close();
    await endpoint?.close();
    await environment.stop();
  }
}

/** Runs what the options select: a lock run, the scaling runs or the comparison. */
async function runSelected(bench: IngestBench, options: IngestOptions): Promise<string> {
  if (options.lockMs > 0) {
    return runLocked(bench, options);
  }

  if (options.isScaling) {
    return runScaling(bench, options);
  }

  return runComparison(bench, options);
}

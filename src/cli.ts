#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, describeSettings, loadConfig, packagePath } from './config.ts';
import { createLogger } from './logger.ts';
import { runDemo } from './commands/demo.ts';
import { runEmulator } from './commands/emulator.ts';
import {
  runExportCommand,
  runLoadReference,
  runMigrate,
  runProduce,
  runService,
} from './commands/service.ts';

const USAGE = `Usage: sqs-pg-parquet <command> [options]

Consumes Avro records from SQS into PostgreSQL and exports the delivery report as Parquet to S3.

Commands:
  migrate                      Create the events and trusted schemas and tables if missing.
  load-reference --bancos FILE --empregados FILE [--empregados FILE...]
                               Replace trusted.bancos and trusted.empregados in one transaction.
  produce PATH...              Send each row of complaint CSV files (or folders of them) to
                               SQS_QUEUE_URL as one Avro message; prints the count per file.
  run [--pipelines LIST] [--until-empty]
                               Run ingest and/or export (comma-separated) until SIGINT or
                               SIGTERM; default from PIPELINES (ingest,export). With
                               --until-empty, ingest until a receive finds the queue empty,
                               then export once (if selected) and exit.
  export                       Run one export now; prints the s3:// URI as the last line.
  demo [--data DIR] [--output DIR]
                               Run everything on an embedded PostgreSQL and an in-process
                               SQS/S3 emulator; copies the Parquet file to DIR
                               (default ./demo-output).
  emulator [--port N] [--queue NAME] [--bucket NAME]
                               Start a local SQS and S3 emulator on 127.0.0.1 (default port
                               4566) with one queue and one bucket; prints the settings to use.

Options:
  -h, --help                   Show this help, or with --settings every environment variable.
  --settings                   List the environment variables with their defaults.
  -v, --version                Print the version.

Settings come from environment variables and a .env file in the working directory.`;

function readVersion(): string {
  const manifest = JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as {
    version: string;
  };

  return manifest.version;
}

function formatSettings(): string {
  return describeSettings()
    .map((setting) => {
      const defaultText = Array.isArray(setting.default)
        ? setting.default.join(',')
        : String(setting.default);

      // A name as wide as the column still gets a space before its description.
      return `  ${`${setting.env} `.padEnd(34)}${setting.doc} Default: ${defaultText || '(empty)'}`;
    })
    .join('\n');
}

type CommandHandler = (args: string[]) => Promise<number>;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;

  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);

    return command === undefined ? 2 : 0;
  }

  if (command === '--settings') {
    process.stdout.write(`Environment variables:\n${formatSettings()}\n`);

    return 0;
  }

  if (command === '-v' || command === '--version') {
    process.stdout.write(`${readVersion()}\n`);

    return 0;
  }

  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);

    return 0;
  }

  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const handlers: Record<string, CommandHandler> = {
    migrate: () => runMigrate(config, logger),
    'load-reference': (rest) => runLoadReference(config, logger, parseLoadReferenceArgs(rest)),
    produce: (rest) => runProduce(config, logger, parsePositionals(rest, 'produce')),
    run: (rest) => runService(config, logger, parseRunArgs(rest)),
    export: (rest) => {
      parsePositionals(rest, 'export', 0);

      return runExportCommand(config, logger);
    },
    demo: (rest) => runDemo(config, logger, parseDemoArgs(rest)),
    emulator: (rest) => runEmulator(config, logger, parseEmulatorArgs(rest)),
  };
  const handler = handlers[command];

  if (handler === undefined) {
    throw new UsageError(`unknown command "${command}"; run sqs-pg-parquet --help for the list`);
  }

  return handler(args);
}

/** Wrong command-line arguments; printed with a pointer to --help. */
class UsageError extends Error {
  override name = 'UsageError';
}

/** Runs an argument parser, turning its errors into UsageError. */
function parseStrict<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError(`${(error as Error).message}; run sqs-pg-parquet --help`);
  }
}

function parsePositionals(args: string[], command: string, minimum = 1): string[] {
  const { positionals } = parseStrict(() => parseArgs({ args, options: {}, allowPositionals: true, strict: true }));

  if (positionals.length < minimum) {
    throw new UsageError(`${command} needs at least one PATH; run sqs-pg-parquet --help`);
  }

  if (minimum === 0 && positionals.length > 0) {
    throw new UsageError(`${command} takes no arguments, got "${positionals.join(' ')}"`);
  }

  return positionals;
}

function parseLoadReferenceArgs(args: string[]): { bancosPath: string; empregadosPaths: string[] } {
  const { values } = parseStrict(() => parseArgs({
    args,
    options: {
      bancos: { type: 'string' },
      empregados: { type: 'string', multiple: true },
    },
    strict: true,
  }));

  if (values.bancos === undefined || values.empregados === undefined) {
    throw new UsageError(
      'load-reference needs --bancos FILE and at least one --empregados FILE; run sqs-pg-parquet --help',
    );
  }

  return { bancosPath: values.bancos, empregadosPaths: values.empregados };
}

function parseRunArgs(args: string[]): { pipelines?: string; untilEmpty: boolean } {
  const { values } = parseStrict(() => parseArgs({
    args,
    options: { pipelines: { type: 'string' }, 'until-empty': { type: 'boolean' } },
    strict: true,
  }));

  return { pipelines: values.pipelines, untilEmpty: values['until-empty'] ?? false };
}

function parseDemoArgs(args: string[]): { dataDir?: string; outputDir: string } {
  const { values } = parseStrict(() => parseArgs({
    args,
    options: { data: { type: 'string' }, output: { type: 'string', default: 'demo-output' } },
    strict: true,
  }));

  return { dataDir: values.data, outputDir: values.output ?? 'demo-output' };
}

function parseEmulatorArgs(args: string[]): { port: number; queueName: string; bucketName: string } {
  const { values } = parseStrict(() => parseArgs({
    args,
    options: {
      port: { type: 'string', default: '4566' },
      queue: { type: 'string', default: 'reclamacoes' },
      bucket: { type: 'string', default: 'deliveries' },
    },
    strict: true,
  }));
  const port = Number(values.port);

  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`invalid --port "${values.port}": use an integer from 0 to 65535`);
  }

  return { port, queueName: values.queue ?? 'reclamacoes', bucketName: values.bucket ?? 'deliveries' };
}

// The exit is explicit so that a handle still closing (a socket, a timer of a client) cannot
// keep the process alive once the command has finished.
main(process.argv.slice(2)).then(
  (exitCode) => process.exit(exitCode),
  (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);

    process.stderr.write(`sqs-pg-parquet: ${message}\n`);
    process.exit(error instanceof ConfigError || error instanceof UsageError ? 2 : 1);
  },
);

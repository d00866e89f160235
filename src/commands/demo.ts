import { createWriteStream } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import { loadRecordType } from '../avro.ts';
import { packagePath, requireSetting, type Config } from '../config.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../local/embedded-postgres.ts';
import type { Logger } from '../logger.ts';
import { runExport } from '../pipelines/export.ts';
import { runIngest } from '../pipelines/ingest.ts';
import { loadReference } from '../pipelines/load-reference.ts';
import { produce } from '../pipelines/produce.ts';
import { describeTarget } from '../postgres.ts';
import { openContext, type CommandContext } from './context.ts';
import { startLocalAws, type LocalAws } from './emulator.ts';

/** Long-poll wait while the demo drains the queue: short, since nothing else writes to it. */
const DEMO_WAIT_TIME_SECONDS = 1;

type DemoFiles = { complaintsDir: string; bancosPath: string; empregadosPaths: string[] };

async function listFiles(folder: string, extension: string): Promise<string[]> {
  const names = await readdir(folder).catch(() => []);

  return names
    .filter((name) => name.toLowerCase().endsWith(extension))
    .sort()
    .map((name) => join(folder, name));
}

/**
 * Finds the input in a data folder laid out as `reclamacoes/*.csv`, `bancos/*.tsv` and
 * `empregados/*.csv`.
 */
async function findDemoFiles(dataDir: string): Promise<DemoFiles> {
  const complaintsDir = join(dataDir, 'reclamacoes');
  const [bancosPath] = await listFiles(join(dataDir, 'bancos'), '.tsv');
  const empregadosPaths = await listFiles(join(dataDir, 'empregados'), '.csv');
  const hasComplaints = await stat(complaintsDir).then((info) => info.isDirectory(), () => false);

  if (!hasComplaints || bancosPath === undefined || empregadosPaths.length === 0) {
    throw new Error(
      `data folder ${dataDir} is incomplete: it needs reclamacoes/*.csv, bancos/*.tsv and ` +
        'empregados/*.csv; pass another folder with --data or omit it for the bundled sample',
    );
  }

  return { complaintsDir, bancosPath, empregadosPaths };
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * `demo`: runs produce, ingest and export once on the given data (the bundled sample by
 * default). Without PostgreSQL settings it starts an embedded server, and without AWS settings
 * an emulator on 127.0.0.1; both are stopped at the end.
 */
export async function runDemo(
  config: Config,
  logger: Logger,
  options: { dataDir?: string; outputDir: string },
): Promise<number> {
  const dataDir = resolve(options.dataDir ?? packagePath('samples'));
  const files = await findDemoFiles(dataDir);
  let embedded: EmbeddedServer | undefined;
  let localAws: LocalAws | undefined;

  try {
    let demoConfig = config;

    if (!process.env.POSTGRES_HOST && !process.env.DATABASE_URL) {
      embedded = await startEmbeddedPostgres(logger);
      demoConfig = withPostgres(demoConfig, embedded);
      say(`PostgreSQL: embedded server on 127.0.0.1:${embedded.port}`);
    } else {
      say(
        `PostgreSQL: ${describeTarget(config)}, as POSTGRES_HOST or DATABASE_URL set it; its ` +
          'reference tables are replaced. Unset both to use an embedded server.',
      );
    }

    if (config.aws.endpointUrl === '' && config.sqs.queueUrl === '') {
      localAws = await startLocalAws(demoConfig, {
        port: 0,
        queueName: 'reclamacoes',
        bucketName: 'deliveries',
      });
      demoConfig = localAws.config;
      say(`SQS and S3: emulator on ${localAws.emulator.endpointUrl}`);
    }

    demoConfig = { ...demoConfig, sqs: { ...demoConfig.sqs, waitTimeSeconds: DEMO_WAIT_TIME_SECONDS } };

    const context = await openContext(demoConfig, logger);

    try {
      await runDemoSteps(context, files, options.outputDir);
    } finally {
      await context.close();
    }
  } finally {
    await localAws?.emulator.stop();
    await embedded?.stop();
  }

  return 0;
}

function withPostgres(config: Config, server: EmbeddedServer): Config {
  return {
    ...config,
    postgres: {
      ...config.postgres,
      host: server.host,
      port: server.port,
      user: server.user,
      password: server.password,
      database: server.database,
      url: '',
    },
  };
}

async function runDemoSteps(context: CommandContext, files: DemoFiles, outputDir: string) {
  const { config, logger, pool, sqs, s3 } = context;
  const queueUrl = requireSetting(config.sqs.queueUrl, 'SQS_QUEUE_URL', 'http://127.0.0.1:4566/000000000000/reclamacoes');
  const bucket = requireSetting(config.s3.bucket, 'S3_BUCKET_NAME', 'deliveries');
  const reference = await loadReference(
    pool,
    { bancosPath: files.bancosPath, empregadosPaths: files.empregadosPaths },
    logger,
  );

  say(`reference: ${reference.bancoCount} banks, ${reference.empregadoCount} employer rows`);

  const produced = await produce([files.complaintsDir], { config, logger, sqs });

  for (const result of produced) {
    say(`produce: ${basename(result.file)}: ${result.messageCount} messages`);
  }

  const startedAtMs = Date.now();
  const recordType = await loadRecordType(config.ingest.schemaPath);
  const counts = await runIngest({ config, logger, sqs, pool, recordType, queueUrl, stopWhenEmpty: true });
  const seconds = (Date.now() - startedAtMs) / 1000;

  say(
    `ingest: ${counts.storedCount} stored, ${counts.duplicateCount} duplicates, ` +
      `${counts.deadLetterCount} dead-lettered, ${counts.deletedCount} deleted in ${seconds.toFixed(1)} s`,
  );

  const exported = await runExport({ config, logger, pool, s3, bucket });

  say(`export: ${exported.rowCount} rows, ${exported.sizeBytes} bytes to ${exported.uri}`);

  const localPath = await downloadObject(context, bucket, exported.key, outputDir);

  say(`parquet: ${localPath}`);
  await printSummary(localPath);
}

async function downloadObject(
  context: CommandContext,
  bucket: string,
  key: string,
  outputDir: string,
): Promise<string> {
  const response = await context.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const localPath = resolve(outputDir, basename(key));

  await mkdir(outputDir, { recursive: true });
  await pipeline(response.Body as Readable, createWriteStream(localPath));

  return localPath;
}

/** Prints the report's size and its five institutions with the most complaints. */
async function printSummary(parquetPath: string): Promise<void> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  const source = `read_parquet('${parquetPath.replaceAll("'", "''")}')`;

  try {
    const totals = await connection.runAndReadAll(
      `SELECT count(*) AS row_count, count(DISTINCT instituicao_financeira) AS institutions,
         count(DISTINCT employer_name) AS employers,
         min(ano) AS first_year, max(ano) AS last_year
       FROM ${source}`,
    );
    const [rowCount, institutions, employers, firstYear, lastYear] = totals.getRows()[0] ?? [];
    const columnCount = (await connection.runAndReadAll(`DESCRIBE SELECT * FROM ${source}`))
      .getRows().length;

    say('');
    say(`delivery report: ${rowCount} rows, ${columnCount} columns, ${institutions} institutions, ` +
      `${employers} employers, years ${firstYear}-${lastYear}`);

    const top = await connection.runAndReadAll(
      `SELECT instituicao_financeira, sum(qtd_total_reclamacoes) AS complaints, max(geral) AS rating
       FROM ${source}
       GROUP BY instituicao_financeira
       ORDER BY complaints DESC NULLS LAST, instituicao_financeira
       LIMIT 5`,
    );

    say('most complaints (all quarters) and employer rating:');

    for (const [name, complaints, rating] of top.getRows()) {
      say(`  ${String(name).padEnd(56)} ${String(complaints).padStart(8)}   ${rating ?? '-'}`);
    }
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

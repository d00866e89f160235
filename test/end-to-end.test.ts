import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import { loadRecordType } from '../src/avro.ts';
import { createS3Client } from '../src/aws.ts';
import { BUNDLED_SCHEMA_PATH, packagePath } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { runExport } from '../src/pipelines/export.ts';
import { runIngest } from '../src/pipelines/ingest.ts';
import { loadReference } from '../src/pipelines/load-reference.ts';
import { produce } from '../src/pipelines/produce.ts';
import { startTestAws, type TestAws } from './helpers/aws.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';

const logger = createLogger('silent');
const sharedData = fileURLToPath(new URL('../../shared/data/', import.meta.url));
const realDataSkip = existsSync(sharedData)
  ? false
  : `real data folder ${sharedData} is absent; these tests need the published complaint files`;

/** The report's columns and Parquet types, in order, as DuckDB names the types. */
const REPORT_COLUMNS: Array<[string, string]> = [
  ['ano', 'INTEGER'],
  ['trimestre', 'VARCHAR'],
  ['categoria', 'VARCHAR'],
  ['tipo', 'VARCHAR'],
  ['cnpj', 'VARCHAR'],
  ['instituicao_financeira', 'VARCHAR'],
  ['indice', 'DOUBLE'],
  ['qtd_reclamacoes_reguladas_procedentes', 'BIGINT'],
  ['qtd_reclamacoes_reguladas_outras', 'BIGINT'],
  ['qtd_reclamacoes_nao_reguladas', 'BIGINT'],
  ['qtd_total_clientes_ccs_e_scr', 'BIGINT'],
  ['qtd_clientes_ccs', 'BIGINT'],
  ['qtd_clientes_scr', 'BIGINT'],
  ['qtd_total_reclamacoes', 'BIGINT'],
  ['employer_name', 'VARCHAR'],
  ['reviews_count', 'BIGINT'],
  ['culture_count', 'BIGINT'],
  ['salaries_count', 'BIGINT'],
  ['benefits_count', 'BIGINT'],
  ['employerwebsite', 'VARCHAR'],
  ['employerheadquarters', 'VARCHAR'],
  ['employerfounded', 'INTEGER'],
  ['employerindustry', 'VARCHAR'],
  ['employerrevenue', 'VARCHAR'],
  ['url', 'VARCHAR'],
  ['geral', 'DOUBLE'],
  ['cultura_e_valores', 'DOUBLE'],
  ['diversidade_e_inclusao', 'DOUBLE'],
  ['qualidade_de_vida', 'DOUBLE'],
  ['alta_lideranca', 'DOUBLE'],
  ['remuneracao_e_beneficios', 'DOUBLE'],
  ['oportunidades_de_carreira', 'DOUBLE'],
  ['recomendam_para_outras_pessoas', 'DOUBLE'],
  ['perspectiva_positiva_da_empresa', 'DOUBLE'],
  ['segmento', 'VARCHAR'],
  ['nome', 'VARCHAR'],
];

type Delivered = {
  key: string;
  columns: Array<[string, string]>;
  rows: Array<Record<string, unknown>>;
  queryRows: Array<Record<string, unknown>>;
};

/** Reads a Parquet file back with DuckDB: its column types and its rows as plain objects. */
async function readParquet(path: string) {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();

  try {
    const source = `read_parquet('${path}')`;
    const described = await connection.runAndReadAll(`DESCRIBE SELECT * FROM ${source}`);
    const columns = described.getRows().map((row) => [String(row[0]), String(row[1])]) as Array<
      [string, string]
    >;
    const result = await connection.runAndReadAll(`SELECT * FROM ${source}`);

    return { columns, rows: result.getRowObjectsJS() as Array<Record<string, unknown>> };
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/** Converts a row from node-postgres to the JavaScript values DuckDB returns for Parquet. */
function normalizeQueryRow(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(row).map(([name, value]) => {
      const type = REPORT_COLUMNS.find(([column]) => column === name)?.[1];

      return [name, type === 'BIGINT' && value !== null ? BigInt(value as string) : value];
    }),
  );
}

describe('produce, ingest and export', () => {
  let database: TestDatabase;
  let aws: TestAws;
  let workDir: string;

  before(async () => {
    database = await createTestDatabase();
    aws = await startTestAws(database.config);
    workDir = await mkdtemp(join(tmpdir(), 'sqs-pg-parquet-e2e-'));
  });

  after(async () => {
    await aws.stop();
    await database.drop();
    await rm(workDir, { recursive: true, force: true });
  });

  /** Runs the three pipelines on a data folder and returns the file and the query's rows. */
  async function deliver(dataDir: string, bancosPath: string, empregadosPaths: string[]) {
    const config = aws.config;
    const { pool } = database;

    await pool.query('TRUNCATE events.reclamacoes_sqs_events, events.dead_letters');
    await loadReference(pool, { bancosPath, empregadosPaths }, logger);
    await produce([join(dataDir, 'reclamacoes')], { config, logger, sqs: aws.sqs });
    await runIngest({
      config,
      logger,
      sqs: aws.sqs,
      pool,
      recordType: await loadRecordType(BUNDLED_SCHEMA_PATH),
      queueUrl: config.sqs.queueUrl,
      stopWhenEmpty: true,
    });

    const s3 = createS3Client(config);
    const exported = await runExport({ config, logger, pool, s3, bucket: config.s3.bucket });
    const object = await s3.send(
      new GetObjectCommand({ Bucket: config.s3.bucket, Key: exported.key }),
    );
    const localPath = join(workDir, `${exported.key.replaceAll('/', '_')}`);

    await writeFile(localPath, await object.Body!.transformToByteArray());
    s3.destroy();

    const { columns, rows } = await readParquet(localPath);
    const query = await pool.query(await readFile(packagePath('sql/delivery.sql'), 'utf8'));

    return { key: exported.key, columns, rows, queryRows: query.rows.map(normalizeQueryRow) };
  }

  describe('on the published data', { skip: realDataSkip }, () => {
    let delivered: Delivered;

    before(async () => {
      delivered = await deliver(
        sharedData,
        join(sharedData, 'bancos/EnquadramentoInicia_v2.tsv'),
        [
          join(sharedData, 'empregados/glassdoor_consolidado_join_match_v2.csv'),
          join(sharedData, 'empregados/glassdoor_consolidado_join_match_less_v2.csv'),
        ],
      );
    });

    test('file has the report columns and types', () => {
      assert.deepEqual(delivered.columns, REPORT_COLUMNS);
    });

    test('file holds exactly the rows of the delivery query', () => {
      assert.ok(delivered.rows.length > 0);
      assert.equal(delivered.rows.length, delivered.queryRows.length);
      assert.deepEqual(delivered.rows, delivered.queryRows);
    });

    test('key follows the delivery layout', () => {
      assert.match(
        delivered.key,
        /^delivery\/dt=\d{4}-\d{2}-\d{2}\/delivery-\d{8}T\d{6}Z-[0-9a-f]{8}\.parquet$/,
      );
    });

    test('Caixa in 2021 Q1 matches the published figures', () => {
      // 2021_tri_01.csv: "2021;1º;Top 10;Conglomerado; ;CAIXA ECONÔMICA FEDERAL (conglomerado);
      // 36,20;5263;6341;4920;16524;145367310;143826538;22933543;". The employer file rates
      // "Caixa Econômica Federal" with 4000 reviews, Geral 4.4, 86.0 % recommend, segment S1;
      // the bank list has "CAIXA ECONOMICA FEDERAL - PRUDENCIAL" with CNPJ 360305.
      const row = delivered.rows.find(
        (candidate) =>
          candidate.instituicao_financeira === 'CAIXA ECONOMICA FEDERAL' &&
          candidate.ano === 2021 &&
          candidate.trimestre === '1º',
      );

      assert.ok(row, 'no report row for CAIXA ECONOMICA FEDERAL in 2021 1º');
      assert.equal(row.categoria, 'Top 10');
      assert.equal(row.tipo, 'Conglomerado');
      assert.equal(row.cnpj, null);
      assert.equal(row.indice, 36.2);
      assert.equal(row.qtd_reclamacoes_reguladas_procedentes, 5263n);
      assert.equal(row.qtd_reclamacoes_reguladas_outras, 6341n);
      assert.equal(row.qtd_reclamacoes_nao_reguladas, 4920n);
      assert.equal(row.qtd_total_reclamacoes, 16524n);
      assert.equal(row.qtd_total_clientes_ccs_e_scr, 145367310n);
      assert.equal(row.qtd_clientes_ccs, 143826538n);
      assert.equal(row.qtd_clientes_scr, 22933543n);
      assert.equal(row.employer_name, 'Caixa Econômica Federal');
      assert.equal(row.reviews_count, 4000n);
      assert.equal(row.geral, 4.4);
      assert.equal(row.recomendam_para_outras_pessoas, 86);
      assert.equal(row.employerfounded, null);
      assert.equal(row.segmento, 'S1');
      assert.equal(row.nome, 'CAIXA ECONOMICA FEDERAL');
    });

    test('BMG in 2021 Q1 matches the published figures', () => {
      // 2021_tri_01.csv: "2021;1º;Grupo Secundário;Conglomerado; ;BMG (conglomerado);165,20;
      // 1190;644;251;2085;7202992;3421046;5072090;"; employer "Banco BMG" founded 1930.0.
      const row = delivered.rows.find(
        (candidate) =>
          candidate.instituicao_financeira === 'BMG' &&
          candidate.ano === 2021 &&
          candidate.trimestre === '1º',
      );

      assert.ok(row, 'no report row for BMG in 2021 1º');
      assert.equal(row.indice, 165.2);
      assert.equal(row.qtd_total_reclamacoes, 2085n);
      assert.equal(row.employer_name, 'Banco BMG');
      assert.equal(row.employerfounded, 1930);
    });
  });

  describe('on the bundled sample, unseen by the other tests', () => {
    let delivered: Delivered;

    before(async () => {
      const samples = packagePath('samples');

      delivered = await deliver(samples, join(samples, 'bancos/bancos.tsv'), [
        join(samples, 'empregados/glassdoor_sample_match.csv'),
        join(samples, 'empregados/glassdoor_sample_match_less.csv'),
      ]);
    });

    test('file holds exactly the rows of the delivery query', () => {
      assert.ok(delivered.rows.length > 0);
      assert.deepEqual(delivered.columns, REPORT_COLUMNS);
      assert.deepEqual(delivered.rows, delivered.queryRows);
    });
  });
});

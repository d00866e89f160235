import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, beforeEach, describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { packagePath } from '../src/config.ts';
import { loadReference } from '../src/pipelines/load-reference.ts';
import { readDelimitedFile } from '../src/sources/delimited-file.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';

/** A complaint record as the consumer stores it in `body`: Avro field names, string values. */
type Complaint = Record<string, string | null>;

type StoredEvent = {
  body: Complaint;
  messageId?: string;
  md5Body?: string;
  createdAt?: string;
};

type Bank = { segmento?: string | null; cnpj: string | null; nome: string | null };

type Employer = Record<string, string | number | null>;

const NULLABLE_FIELDS = [
  'cnpj_if',
  'quantidade_de_reclamacoes_reguladas_outras',
  'quantidade_de_reclamacoes_nao_reguladas',
  'quantidade_de_clientes_ccs',
  'quantidade_de_clientes_scr',
];

const COMPLAINT: Complaint = {
  ano: '2021',
  trimestre: '1º',
  categoria: 'Top 10',
  tipo: 'Conglomerado',
  cnpj_if: null,
  instituicao_financeira: 'BANCO X (conglomerado)',
  indice: '10,00',
  quantidade_de_reclamacoes_reguladas_procedentes: '1',
  quantidade_de_reclamacoes_reguladas_outras: '2',
  quantidade_de_reclamacoes_nao_reguladas: '3',
  quantidade_total_de_reclamacoes: '6',
  quantidade_total_de_clientes_ccs_e_scr: '100',
  quantidade_de_clientes_ccs: '60',
  quantidade_de_clientes_scr: '40',
};

/** The 36 report columns in contract order, with their PostgreSQL types. */
const REPORT_COLUMNS: Array<[string, string]> = [
  ['ano', 'int4'],
  ['trimestre', 'text'],
  ['categoria', 'text'],
  ['tipo', 'text'],
  ['cnpj', 'text'],
  ['instituicao_financeira', 'text'],
  ['indice', 'float8'],
  ['qtd_reclamacoes_reguladas_procedentes', 'int8'],
  ['qtd_reclamacoes_reguladas_outras', 'int8'],
  ['qtd_reclamacoes_nao_reguladas', 'int8'],
  ['qtd_total_clientes_ccs_e_scr', 'int8'],
  ['qtd_clientes_ccs', 'int8'],
  ['qtd_clientes_scr', 'int8'],
  ['qtd_total_reclamacoes', 'int8'],
  ['employer_name', 'text'],
  ['reviews_count', 'int8'],
  ['culture_count', 'int8'],
  ['salaries_count', 'int8'],
  ['benefits_count', 'int8'],
  ['employerwebsite', 'text'],
  ['employerheadquarters', 'text'],
  ['employerfounded', 'int4'],
  ['employerindustry', 'text'],
  ['employerrevenue', 'text'],
  ['url', 'text'],
  ['geral', 'float8'],
  ['cultura_e_valores', 'float8'],
  ['diversidade_e_inclusao', 'float8'],
  ['qualidade_de_vida', 'float8'],
  ['alta_lideranca', 'float8'],
  ['remuneracao_e_beneficios', 'float8'],
  ['oportunidades_de_carreira', 'float8'],
  ['recomendam_para_outras_pessoas', 'float8'],
  ['perspectiva_positiva_da_empresa', 'float8'],
  ['segmento', 'text'],
  ['nome', 'text'],
];

const TYPE_NAMES = new Map([
  [pg.types.builtins.INT4, 'int4'],
  [pg.types.builtins.INT8, 'int8'],
  [pg.types.builtins.FLOAT8, 'float8'],
  [pg.types.builtins.TEXT, 'text'],
]);

const DATA_FOLDER = fileURLToPath(new URL('../../shared/data/', import.meta.url));
const missingDataReason = existsSync(DATA_FOLDER)
  ? false
  : `the published input files are not in ${DATA_FOLDER}`;

const logger = pino({ level: 'silent' });

let database: TestDatabase;
let deliverySql: string;
let invalidValuesSql: string;

before(async () => {
  database = await createTestDatabase();
  deliverySql = await readFile(packagePath('sql/delivery.sql'), 'utf8');
  invalidValuesSql = await readFile(packagePath('sql/delivery-invalid-values.sql'), 'utf8');
});

after(async () => {
  await database.drop();
});

beforeEach(async () => {
  await database.pool.query(
    'TRUNCATE events.reclamacoes_sqs_events, trusted.bancos, trusted.empregados',
  );
});

function md5(text: string): string {
  return createHash('md5').update(text).digest('hex');
}

/** Stores events as the consumer does; by default each has its own id and MD5. */
async function insertEvents(events: StoredEvent[]): Promise<void> {
  for (const event of events) {
    const body = JSON.stringify(event.body);

    await database.pool.query(
      'INSERT INTO events.reclamacoes_sqs_events ' +
        '(message_id, receipt_handle, md5_body, body, created_at) ' +
        'VALUES ($1, $2, $3, $4, coalesce($5::timestamptz, now()))',
      [
        event.messageId ?? randomUUID(),
        'receipt',
        event.md5Body ?? md5(body),
        body,
        event.createdAt,
      ],
    );
  }
}

/** Builds a stored copy of one message (MD5 `same`) that differs from the others in indice. */
function versionOfOneMessage(indice: string, messageId: string, createdAt: string): StoredEvent {
  return { body: { ...COMPLAINT, indice }, md5Body: 'same', messageId, createdAt };
}

/** Stores complaint records, each a distinct message, as variations of COMPLAINT. */
async function insertComplaints(...overrides: Complaint[]): Promise<void> {
  await insertEvents(overrides.map((override) => ({ body: { ...COMPLAINT, ...override } })));
}

async function insertBanks(...banks: Bank[]): Promise<void> {
  for (const bank of banks) {
    await database.pool.query(
      'INSERT INTO trusted.bancos (segmento, cnpj, nome) VALUES ($1, $2, $3)',
      [bank.segmento ?? null, bank.cnpj, bank.nome],
    );
  }
}

/** Stores employer rows; columns left out are null. */
async function insertEmployers(...employers: Employer[]): Promise<void> {
  for (const employer of employers) {
    const columns = Object.keys(employer);
    const placeholders = columns.map((_, index) => `$${index + 1}`);

    await database.pool.query(
      `INSERT INTO trusted.empregados (${columns.join(', ')}) VALUES (${placeholders.join(', ')})`,
      Object.values(employer),
    );
  }
}

async function runDelivery(): Promise<pg.QueryResult> {
  return database.pool.query(deliverySql);
}

/** Runs the delivery query and keeps the named columns of each row. */
async function selectReport(...columns: string[]): Promise<Array<Record<string, unknown>>> {
  const { rows } = await runDelivery();

  return rows.map((row) => Object.fromEntries(columns.map((column) => [column, row[column]])));
}

/** An employer whose normalized name matches COMPLAINT's institution. */
const EMPLOYER_X: Employer = { employer_name: 'Banco X', nome: 'BANCO X' };

describe('sql/delivery.sql columns', () => {
  test('returns the 36 contract columns in order with their types', async () => {
    const { fields } = await runDelivery();

    const columns = fields.map((field) => [field.name, TYPE_NAMES.get(field.dataTypeID)]);

    assert.deepEqual(columns, REPORT_COLUMNS);
  });

  test('maps every source count to its report column', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({});

    const [row] = (await runDelivery()).rows;

    assert.equal(row.qtd_reclamacoes_reguladas_procedentes, '1');
    assert.equal(row.qtd_reclamacoes_reguladas_outras, '2');
    assert.equal(row.qtd_reclamacoes_nao_reguladas, '3');
    assert.equal(row.qtd_total_reclamacoes, '6');
    assert.equal(row.qtd_total_clientes_ccs_e_scr, '100');
    assert.equal(row.qtd_clientes_ccs, '60');
    assert.equal(row.qtd_clientes_scr, '40');
  });
});

describe('sql/delivery.sql step 1, deduplication', () => {
  test('counts a message stored twice under one MD5 once', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertEvents([
      { body: COMPLAINT, md5Body: 'same' },
      { body: COMPLAINT, md5Body: 'same' },
    ]);

    assert.deepEqual(await selectReport('qtd_total_reclamacoes'), [{ qtd_total_reclamacoes: '6' }]);
  });

  test('counts equal bodies under different MD5s twice', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertEvents([
      { body: COMPLAINT, md5Body: 'first' },
      { body: COMPLAINT, md5Body: 'second' },
    ]);

    const rows = await selectReport('qtd_total_reclamacoes');

    assert.deepEqual(rows, [{ qtd_total_reclamacoes: '12' }]);
  });

  test('keeps the most recently stored message of an MD5', async () => {
    await insertEmployers(EMPLOYER_X);
    // The newest message has the lowest message_id, so that only created_at can pick it.
    await insertEvents([
      versionOfOneMessage('1,00', 'z', '2024-01-02'),
      versionOfOneMessage('2,00', 'a', '2024-01-03'),
      versionOfOneMessage('3,00', 'y', '2024-01-01'),
    ]);

    assert.deepEqual(await selectReport('indice'), [{ indice: 2 }]);
  });

  test('keeps the byte-wise greatest message_id on equal created_at', async () => {
    const createdAt = '2024-01-01T00:00:00Z';

    await insertEmployers(EMPLOYER_X);
    // In byte order `msg-a` (0x61) sorts after `msg-B` (0x42); most locales put it first.
    await insertEvents([
      versionOfOneMessage('1,00', 'msg-B', createdAt),
      versionOfOneMessage('2,00', 'msg-a', createdAt),
    ]);

    assert.deepEqual(await selectReport('indice'), [{ indice: 2 }]);
  });
});

describe('sql/delivery.sql step 2, cleaning', () => {
  test('trims text fields and normalizes the institution name', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({
      trimestre: ' 1º\t',
      categoria: '\u00A0Top 10 ',
      tipo: ' Conglomerado ',
      instituicao_financeira: ' banco  x - PRUDENCIAL ',
    });

    const [row] = (await runDelivery()).rows;

    assert.equal(row.trimestre, '1º');
    assert.equal(row.categoria, 'Top 10');
    assert.equal(row.tipo, 'Conglomerado');
    assert.equal(row.instituicao_financeira, 'BANCO X');
  });

  test('pads cnpj_if to 8 characters', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({ cnpj_if: ' 5192316 ' });

    assert.deepEqual(await selectReport('cnpj'), [{ cnpj: '05192316' }]);
  });

  test('turns blank values into null', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({
      ano: ' ',
      trimestre: ' ',
      categoria: '',
      tipo: '\t',
      cnpj_if: ' ',
      indice: ' ',
      quantidade_de_reclamacoes_reguladas_procedentes: ' ',
      quantidade_de_clientes_ccs: null,
    });

    const [row] = (await runDelivery()).rows;

    assert.equal(row.ano, null);
    assert.equal(row.trimestre, null);
    assert.equal(row.categoria, null);
    assert.equal(row.tipo, null);
    assert.equal(row.cnpj, null);
    assert.equal(row.indice, null);
    assert.equal(row.qtd_reclamacoes_reguladas_procedentes, null);
    assert.equal(row.qtd_clientes_ccs, null);
  });

  test('parses indice as a Brazilian decimal', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({ indice: ' 1.234,56 ' });

    assert.deepEqual(await selectReport('indice'), [{ indice: 1234.56 }]);
  });

  test('keeps a record whose numbers do not parse, with those values null', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({
      ano: '2021.0',
      indice: '12.5',
      quantidade_de_reclamacoes_reguladas_procedentes: '1.000',
      quantidade_total_de_reclamacoes: 'seis',
    });

    const rows = await selectReport(
      'ano',
      'indice',
      'qtd_reclamacoes_reguladas_procedentes',
      'qtd_total_reclamacoes',
      'qtd_reclamacoes_reguladas_outras',
    );

    assert.deepEqual(rows, [
      {
        ano: null,
        indice: null,
        qtd_reclamacoes_reguladas_procedentes: null,
        qtd_total_reclamacoes: null,
        qtd_reclamacoes_reguladas_outras: '2',
      },
    ]);
  });

  test('keeps a record whose ano is beyond the integer range, with ano null', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({ ano: '99999999999' });

    assert.deepEqual(await selectReport('ano', 'indice'), [{ ano: null, indice: 10 }]);
  });

  test('treats a missing nullable field as null', async () => {
    const { quantidade_de_clientes_scr: _, ...withoutScr } = COMPLAINT;

    await insertEmployers(EMPLOYER_X);
    await insertEvents([{ body: withoutScr }]);

    assert.deepEqual(await selectReport('qtd_clientes_scr'), [{ qtd_clientes_scr: null }]);
  });
});

describe('sql/delivery.sql step 3, aggregation', () => {
  test('averages indice over the non-null values and sums the counts', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints(
      { indice: '10,00', quantidade_total_de_reclamacoes: '6' },
      { indice: ' ', quantidade_total_de_reclamacoes: '4' },
      { indice: '20,00', quantidade_total_de_reclamacoes: 'x' },
    );

    const rows = await selectReport('indice', 'qtd_total_reclamacoes');

    assert.deepEqual(rows, [{ indice: 15, qtd_total_reclamacoes: '10' }]);
  });

  test('returns null where every value of the group is null', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints(
      { indice: ' ', quantidade_de_clientes_ccs: null },
      { indice: 'x', quantidade_de_clientes_ccs: ' ' },
    );

    const rows = await selectReport('indice', 'qtd_clientes_ccs');

    assert.deepEqual(rows, [{ indice: null, qtd_clientes_ccs: null }]);
  });

  test('groups by the cleaned key, so spelling variants merge', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints(
      { instituicao_financeira: 'BANCO X (conglomerado)', trimestre: '1º' },
      { instituicao_financeira: 'Banco X S.A.', trimestre: ' 1º ' },
    );

    const rows = await selectReport('qtd_total_reclamacoes');

    assert.deepEqual(rows, [{ qtd_total_reclamacoes: '12' }]);
  });

  test('keeps groups apart that differ in one key', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({ tipo: 'Conglomerado' }, { tipo: 'Banco/financeira' });

    const rows = await selectReport('tipo', 'qtd_total_reclamacoes');

    assert.deepEqual(rows, [
      { tipo: 'Banco/financeira', qtd_total_reclamacoes: '6' },
      { tipo: 'Conglomerado', qtd_total_reclamacoes: '6' },
    ]);
  });

  test('returns null for a sum beyond the bigint range', async () => {
    const max = '9223372036854775807';

    await insertEmployers(EMPLOYER_X);
    await insertComplaints(
      { quantidade_total_de_reclamacoes: max },
      { quantidade_total_de_reclamacoes: '1' },
    );

    const rows = await selectReport('qtd_total_reclamacoes');

    assert.deepEqual(rows, [{ qtd_total_reclamacoes: null }]);
  });
});

describe('sql/delivery.sql step 4, employer profiles', () => {
  test('takes segmento, cnpj and nome from a bank that matches by name', async () => {
    await insertBanks({ segmento: 'S1', cnpj: '00000001', nome: 'BANCO X' });
    await insertEmployers({ employer_name: 'Banco X', segmento: 'S9', nome: 'BANCO X' });
    await insertComplaints({});

    const rows = await selectReport('employer_name', 'segmento', 'nome');

    assert.deepEqual(rows, [{ employer_name: 'Banco X', segmento: 'S1', nome: 'BANCO X' }]);
  });

  test('joins through the cnpj of the bank matched by name', async () => {
    // The complaint's name differs, so only the profile cnpj, taken from the bank, can match.
    await insertBanks({ segmento: 'S1', cnpj: '00000001', nome: 'BANCO X' });
    await insertEmployers({ employer_name: 'Banco X', nome: 'BANCO X' });
    await insertComplaints({ cnpj_if: '1', instituicao_financeira: 'OUTRO NOME' });

    const rows = await selectReport('employer_name', 'cnpj', 'nome');

    assert.deepEqual(rows, [{ employer_name: 'Banco X', cnpj: '00000001', nome: 'BANCO X' }]);
  });

  test('prefers a cnpj match over a lower-cnpj name match', async () => {
    await insertBanks(
      { segmento: 'S2', cnpj: '00000001', nome: 'BANCO X' },
      { segmento: 'S3', cnpj: '00000009', nome: 'BANCO Y' },
    );
    await insertEmployers({ employer_name: 'Banco X', cnpj: '00000009', nome: 'BANCO X' });
    await insertComplaints({ cnpj_if: '9', instituicao_financeira: 'OUTRO NOME' });

    assert.deepEqual(await selectReport('segmento', 'nome'), [{ segmento: 'S3', nome: 'BANCO Y' }]);
  });

  test('prefers the lowest bank cnpj among name-only matches', async () => {
    await insertBanks(
      { segmento: 'S2', cnpj: '00000002', nome: 'BANCO X' },
      { segmento: 'S1', cnpj: '00000001', nome: 'BANCO X' },
      { segmento: 'S3', cnpj: null, nome: 'BANCO X' },
    );
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({ cnpj_if: '1' });

    const rows = await selectReport('segmento', 'cnpj');

    assert.deepEqual(rows, [{ segmento: 'S1', cnpj: '00000001' }]);
  });

  test('prefers the byte-wise lowest bank nome among cnpj matches', async () => {
    // Byte order puts `BANCO Z` (0x5A) before `BANCO a` (0x61); most locales do the reverse.
    await insertBanks(
      { segmento: 'S2', cnpj: '00000001', nome: 'BANCO a' },
      { segmento: 'S1', cnpj: '00000001', nome: 'BANCO Z' },
    );
    await insertEmployers({ employer_name: 'Banco X', cnpj: '00000001', nome: 'BANCO X' });
    await insertComplaints({ cnpj_if: '1' });

    assert.deepEqual(await selectReport('segmento', 'nome'), [{ segmento: 'S1', nome: 'BANCO Z' }]);
  });

  test('keeps the employer columns where no bank matches', async () => {
    await insertBanks({ segmento: 'S1', cnpj: '00000001', nome: 'OUTRO BANCO' });
    await insertEmployers({
      employer_name: 'Banco X',
      segmento: 'S4',
      cnpj: '00000005',
      nome: 'BANCO X',
    });
    await insertComplaints({ cnpj_if: '5' });

    const rows = await selectReport('segmento', 'cnpj', 'nome');

    assert.deepEqual(rows, [{ segmento: 'S4', cnpj: '00000005', nome: 'BANCO X' }]);
  });

  test('keeps the profile with the highest match_percent, nulls last', async () => {
    await insertEmployers(
      { ...EMPLOYER_X, match_percent: null, reviews_count: 1 },
      { ...EMPLOYER_X, match_percent: 70, reviews_count: 2 },
      { ...EMPLOYER_X, match_percent: 90, reviews_count: 3 },
    );
    await insertComplaints({});

    assert.deepEqual(await selectReport('reviews_count'), [{ reviews_count: '3' }]);
  });

  test('prefers a profile matched by cnpj on equal match_percent', async () => {
    // Both profiles end up with cnpj 00000001: one through the employer's cnpj, one through the
    // bank its name matched.
    await insertBanks(
      { segmento: 'S1', cnpj: '00000001', nome: 'BANCO X' },
      { segmento: 'S1', cnpj: '00000001', nome: 'BANCO X2' },
    );
    await insertEmployers(
      { ...EMPLOYER_X, match_percent: 80, reviews_count: 9 },
      { ...EMPLOYER_X, cnpj: '00000001', nome: 'BANCO X2', match_percent: 80, reviews_count: 1 },
    );
    await insertComplaints({});

    assert.deepEqual(await selectReport('reviews_count'), [{ reviews_count: '1' }]);
  });

  test('prefers the highest reviews_count next', async () => {
    await insertEmployers(
      { ...EMPLOYER_X, match_percent: 80, reviews_count: 5 },
      { ...EMPLOYER_X, match_percent: 80, reviews_count: null },
      { ...EMPLOYER_X, match_percent: 80, reviews_count: 7 },
    );
    await insertComplaints({});

    assert.deepEqual(await selectReport('reviews_count'), [{ reviews_count: '7' }]);
  });

  test('then prefers the lowest value column by column, nulls last', async () => {
    // perspectiva_positiva_da_empresa comes after culture_count and geral in report order, so
    // it only identifies the chosen row.
    await insertEmployers(
      { ...EMPLOYER_X, culture_count: 2, geral: 1, perspectiva_positiva_da_empresa: 1 },
      { ...EMPLOYER_X, culture_count: null, geral: 1, perspectiva_positiva_da_empresa: 2 },
      { ...EMPLOYER_X, culture_count: 1, geral: 4.5, perspectiva_positiva_da_empresa: 3 },
      { ...EMPLOYER_X, culture_count: 1, geral: 3.5, perspectiva_positiva_da_empresa: 4 },
    );
    await insertComplaints({});

    const rows = await selectReport('perspectiva_positiva_da_empresa');

    assert.deepEqual(rows, [{ perspectiva_positiva_da_empresa: 4 }]);
  });

  test('compares text columns byte by byte when choosing a profile', async () => {
    await insertEmployers(
      { ...EMPLOYER_X, employerwebsite: 'http://a.example' },
      { ...EMPLOYER_X, employerwebsite: 'http://Z.example' },
    );
    await insertComplaints({});

    const rows = await selectReport('employerwebsite');

    assert.deepEqual(rows, [{ employerwebsite: 'http://Z.example' }]);
  });

  test('keeps profiles of one employer apart when their cnpj differs', async () => {
    await insertBanks(
      { segmento: 'S1', cnpj: '00000001', nome: 'BANCO X' },
      { segmento: 'S2', cnpj: '00000002', nome: 'BANCO X HOLDING' },
    );
    await insertEmployers(
      { employer_name: 'Banco X', nome: 'BANCO X' },
      { employer_name: 'Banco X', cnpj: '00000002', nome: 'OTHER' },
      { employer_name: 'Banco X2', nome: 'BANCO X' },
    );
    await insertComplaints({ cnpj_if: '2' });

    const rows = await selectReport('employer_name', 'segmento', 'nome');

    assert.deepEqual(rows, [
      { employer_name: 'Banco X', segmento: 'S1', nome: 'BANCO X' },
      { employer_name: 'Banco X', segmento: 'S2', nome: 'BANCO X HOLDING' },
      { employer_name: 'Banco X2', segmento: 'S1', nome: 'BANCO X' },
    ]);
  });
});

describe('sql/delivery.sql step 5, join', () => {
  test('joins by cnpj when the names differ', async () => {
    await insertEmployers({ employer_name: 'E', cnpj: '00000007', nome: 'OTHER' });
    await insertComplaints({ cnpj_if: '7' });

    assert.deepEqual(await selectReport('employer_name'), [{ employer_name: 'E' }]);
  });

  test('joins by name when the aggregate has no cnpj', async () => {
    await insertEmployers({ employer_name: 'E', cnpj: '00000007', nome: 'BANCO X' });
    await insertComplaints({ cnpj_if: null });

    const rows = await selectReport('employer_name', 'cnpj');

    assert.deepEqual(rows, [{ employer_name: 'E', cnpj: null }]);
  });

  test('never joins a null cnpj to a null cnpj', async () => {
    await insertEmployers({ employer_name: 'E', nome: 'OTHER' });
    await insertComplaints({ cnpj_if: null });

    assert.deepEqual((await runDelivery()).rows, []);
  });

  test('leaves out an aggregate without a profile', async () => {
    await insertEmployers(EMPLOYER_X);
    await insertComplaints({}, { instituicao_financeira: 'BANCO SEM PERFIL' });

    const rows = await selectReport('instituicao_financeira');

    assert.deepEqual(rows, [{ instituicao_financeira: 'BANCO X' }]);
  });

  test('returns one row per matching profile', async () => {
    await insertEmployers(
      { employer_name: 'E1', nome: 'BANCO X' },
      { employer_name: 'E2', cnpj: '00000003', nome: 'OTHER' },
    );
    await insertComplaints({ cnpj_if: '3' });

    const rows = await selectReport('employer_name');

    assert.deepEqual(rows, [{ employer_name: 'E1' }, { employer_name: 'E2' }]);
  });
});

describe('sql/delivery.sql step 6, order', () => {
  test('orders by institution, ano, trimestre, categoria, tipo, employer and cnpj', async () => {
    await insertEmployers(
      { employer_name: 'F', nome: 'BANCO A' },
      { employer_name: 'E', nome: 'BANCO B' },
      { employer_name: 'D', nome: 'BANCO B' },
    );
    await insertComplaints(
      { instituicao_financeira: 'BANCO B', ano: '2022' },
      { instituicao_financeira: 'BANCO B', ano: '2021', trimestre: '2º' },
      { instituicao_financeira: 'BANCO B', ano: '2021', trimestre: '1º', tipo: 'T2' },
      { instituicao_financeira: 'BANCO B', ano: '2021', trimestre: '1º', tipo: 'T1' },
      { instituicao_financeira: 'BANCO A', ano: '2022' },
    );

    const { rows } = await runDelivery();
    const keys = rows.map((row) =>
      [row.instituicao_financeira, row.ano, row.trimestre, row.tipo, row.employer_name].join(' | '),
    );

    assert.deepEqual(keys, [
      'BANCO A | 2022 | 1º | Conglomerado | F',
      'BANCO B | 2021 | 1º | T1 | D',
      'BANCO B | 2021 | 1º | T1 | E',
      'BANCO B | 2021 | 1º | T2 | D',
      'BANCO B | 2021 | 1º | T2 | E',
      'BANCO B | 2021 | 2º | Conglomerado | D',
      'BANCO B | 2021 | 2º | Conglomerado | E',
      'BANCO B | 2022 | 1º | Conglomerado | D',
      'BANCO B | 2022 | 1º | Conglomerado | E',
    ]);
  });

  test('orders text byte by byte', async () => {
    await insertEmployers(EMPLOYER_X);
    // Byte order: `Top 10` (T is 0x54) before `demais` (d is 0x64); most locales do the reverse.
    await insertComplaints({ categoria: 'demais' }, { categoria: 'Top 10' });

    const rows = await selectReport('categoria');

    assert.deepEqual(rows, [{ categoria: 'Top 10' }, { categoria: 'demais' }]);
  });

  test('puts nulls last', async () => {
    await insertEmployers({ employer_name: 'E', cnpj: '00000001', nome: 'BANCO X' });
    await insertComplaints(
      { ano: ' ', cnpj_if: '1' },
      { ano: '2021', cnpj_if: '1' },
      { ano: '2021', cnpj_if: null },
      { ano: '2021', cnpj_if: '1', instituicao_financeira: '-' },
    );

    const rows = await selectReport('instituicao_financeira', 'ano', 'cnpj');

    assert.deepEqual(rows, [
      { instituicao_financeira: 'BANCO X', ano: 2021, cnpj: '00000001' },
      { instituicao_financeira: 'BANCO X', ano: 2021, cnpj: null },
      { instituicao_financeira: 'BANCO X', ano: null, cnpj: '00000001' },
      { instituicao_financeira: null, ano: 2021, cnpj: '00000001' },
    ]);
  });
});

describe('sql/delivery-invalid-values.sql', () => {
  test('counts each non-blank value that does not parse, per field', async () => {
    await insertComplaints(
      { ano: '2021.0', indice: '12.5' },
      { indice: '12.5', quantidade_total_de_reclamacoes: 'seis' },
      { indice: ' ', quantidade_de_clientes_ccs: null, quantidade_de_clientes_scr: '  ' },
      { quantidade_de_reclamacoes_reguladas_outras: '99999999999999999999' },
    );

    const { rows } = await database.pool.query(invalidValuesSql);

    assert.deepEqual(rows, [
      { field: 'ano', value: '2021.0', count: '1' },
      { field: 'indice', value: '12.5', count: '2' },
      {
        field: 'quantidade_de_reclamacoes_reguladas_outras',
        value: '99999999999999999999',
        count: '1',
      },
      { field: 'quantidade_total_de_reclamacoes', value: 'seis', count: '1' },
    ]);
  });

  test('counts a message stored twice under one MD5 once', async () => {
    const body = { ...COMPLAINT, indice: 'x' };

    await insertEvents([
      { body, md5Body: 'same' },
      { body, md5Body: 'same' },
    ]);

    const { rows } = await database.pool.query(invalidValuesSql);

    assert.deepEqual(rows, [{ field: 'indice', value: 'x', count: '1' }]);
  });

  test('returns no rows when every value parses', async () => {
    await insertComplaints({}, { cnpj_if: 'not a cnpj' });

    assert.deepEqual((await database.pool.query(invalidValuesSql)).rows, []);
  });
});

/** Reads a complaint CSV as the producer does: blank nullable fields become null. */
async function readComplaintFile(path: string): Promise<Complaint[]> {
  const complaints: Complaint[] = [];

  for await (const { values } of readDelimitedFile({ path, encoding: 'latin1', separator: ';' })) {
    const complaint: Complaint = { ...values };

    for (const field of NULLABLE_FIELDS) {
      if (values[field]?.trim() === '') {
        complaint[field] = null;
      }
    }

    complaints.push(complaint);
  }

  return complaints;
}

/** Stores every row of the published complaint files, one message per row. */
async function insertPublishedComplaints(): Promise<void> {
  const folder = join(DATA_FOLDER, 'reclamacoes');
  const files = readdirSync(folder).filter((name) => name.endsWith('.csv'));

  for (const file of files) {
    const complaints = await readComplaintFile(join(folder, file));

    await insertEvents(complaints.map((body) => ({ body })));
  }
}

describe('sql/delivery.sql with the published files', { skip: missingDataReason }, () => {
  test('reports hand-checked figures', async () => {
    await insertPublishedComplaints();
    await loadReference(
      database.pool,
      {
        bancosPath: join(DATA_FOLDER, 'bancos/EnquadramentoInicia_v2.tsv'),
        empregadosPaths: [
          join(DATA_FOLDER, 'empregados/glassdoor_consolidado_join_match_v2.csv'),
          join(DATA_FOLDER, 'empregados/glassdoor_consolidado_join_match_less_v2.csv'),
        ],
      },
      logger,
    );

    const { rows } = await runDelivery();
    const find = (name: string, ano: number, trimestre: string) =>
      rows.filter(
        (row) =>
          row.instituicao_financeira === name && row.ano === ano && row.trimestre === trimestre,
      );

    // Checked by hand: `iconv -f latin1 -t utf8 reclamacoes/*.csv | grep ITAU` shows the only
    // ITAU row of 2021 1º in 2021_tri_01.csv: `2021;1º;Top 10;Conglomerado; ;ITAU
    // (conglomerado);19,72;1636;3086;2156;6878;82955510;63980098;49391035;`. The employer
    // `Itau`, line 23 of empregados/glassdoor_consolidado_join_match_v2.csv (22000 reviews,
    // Geral 4.5, Segmento S1, Nome ITAU), matches by name through the bank `ITAU - PRUDENCIAL`
    // (S1, CNPJ 60872504) of bancos/EnquadramentoInicia_v2.tsv.
    const [itau, ...otherItau] = find('ITAU', 2021, '1º');

    assert.deepEqual(otherItau, []);
    assert.equal(itau?.cnpj, null);
    assert.equal(itau?.categoria, 'Top 10');
    assert.equal(itau?.indice, 19.72);
    assert.equal(itau?.qtd_reclamacoes_reguladas_procedentes, '1636');
    assert.equal(itau?.qtd_total_reclamacoes, '6878');
    assert.equal(itau?.qtd_clientes_scr, '49391035');
    assert.equal(itau?.employer_name, 'Itau');
    assert.equal(itau?.reviews_count, '22000');
    assert.equal(itau?.geral, 4.5);
    assert.equal(itau?.segmento, 'S1');
    assert.equal(itau?.nome, 'ITAU');

    // The same way, 2021_tri_01.csv has `2021;1º;Grupo Secundário;Banco/financeira;07237373;
    // BANCO DO NORDESTE DO BRASIL S.A.; ;19;8;20;47;8512373;7928582;3161435;`, a blank indice.
    // The employer `Banco do Nordeste do Brasil` (line 14, empty employer-founded) has Nome
    // `BANCO DO NORDESTE DO BRASIL S.A.`, and the bank file lists `S2	7237373	BANCO DO
    // NORDESTE DO BRASIL S.A. - PRUDENCIAL`.
    const [nordeste, ...otherNordeste] = find('BANCO DO NORDESTE DO BRASIL', 2021, '1º');

    assert.deepEqual(otherNordeste, []);
    assert.equal(nordeste?.cnpj, '07237373');
    assert.equal(nordeste?.indice, null);
    assert.equal(nordeste?.qtd_reclamacoes_nao_reguladas, '20');
    assert.equal(nordeste?.qtd_total_clientes_ccs_e_scr, '8512373');
    assert.equal(nordeste?.employer_name, 'Banco do Nordeste do Brasil');
    assert.equal(nordeste?.employerfounded, null);
    assert.equal(nordeste?.segmento, 'S2');

    // 2022_tri_01.csv has `BNP PARIBAS (conglomerado);79,87;173;313;58;544;...` for 2022 1º.
    // The employer `BNP Paribas` (line 2, founded 2000.0) matches by name.
    const [bnp, ...otherBnp] = find('BNP PARIBAS', 2022, '1º');

    assert.deepEqual(otherBnp, []);
    assert.equal(bnp?.indice, 79.87);
    assert.equal(bnp?.qtd_total_reclamacoes, '544');
    assert.equal(bnp?.employer_name, 'BNP Paribas');
    assert.equal(bnp?.employerfounded, 2000);
  });

  test('finds no invalid values in the published complaints', async () => {
    await insertPublishedComplaints();

    assert.deepEqual((await database.pool.query(invalidValuesSql)).rows, []);
  });
});

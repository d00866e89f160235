import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { LoadReferenceError, loadReference } from '../src/pipelines/load-reference.ts';
import { createPool } from '../src/postgres.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';

/** The published input files, kept beside the repository and not inside it. */
const DATA_FOLDER = fileURLToPath(new URL('../../shared/data/', import.meta.url));
const BANCOS_PATH = join(DATA_FOLDER, 'bancos/EnquadramentoInicia_v2.tsv');
const EMPREGADOS_PATHS = [
  join(DATA_FOLDER, 'empregados/glassdoor_consolidado_join_match_v2.csv'),
  join(DATA_FOLDER, 'empregados/glassdoor_consolidado_join_match_less_v2.csv'),
];
const REAL_FILES = { bancosPath: BANCOS_PATH, empregadosPaths: EMPREGADOS_PATHS };
const missingDataReason = [BANCOS_PATH, ...EMPREGADOS_PATHS].every(existsSync)
  ? false
  : `the published input files are not in ${DATA_FOLDER}`;

const logger = pino({ level: 'silent' });

let database: TestDatabase;
let folder: string;

before(async () => {
  database = await createTestDatabase();
  folder = await mkdtemp(join(tmpdir(), 'load-reference-test-'));
});

after(async () => {
  await database.drop();
  await rm(folder, { recursive: true, force: true });
});

async function countRows(table: string): Promise<number> {
  const result = await database.pool.query<{ count: string }>(`SELECT count(*) FROM ${table}`);

  return Number(result.rows[0]?.count);
}

async function writeTestFile(name: string, content: string): Promise<string> {
  const path = join(folder, name);

  await writeFile(path, content);

  return path;
}

const EMPLOYER_HEADER =
  'employer_name|reviews_count|culture_count|salaries_count|benefits_count|employer-website|' +
  'employer-headquarters|employer-founded|employer-industry|employer-revenue|url|Geral|' +
  'Cultura e valores|Diversidade e inclusão|Qualidade de vida|Alta liderança|' +
  'Remuneração e benefícios|Oportunidades de carreira|Recomendam para outras pessoas(%)|' +
  'Perspectiva positiva da empresa(%)|CNPJ|Nome|match_percent';

/** Builds an employer line for EMPLOYER_HEADER with the given name, founding year and CNPJ. */
function employerLine(name: string, founded: string, cnpj: string): string {
  const counts = '10|5|7|3';
  const texts = 'http://example.com|São Paulo, Brasil';
  const more = '/Explorar/x.htm|Desconhecida/não se aplica|https://example.com/x';
  const ratings = '3.2|2.9|3.5|3.0|2.9|2.7|3.2|52.0|53.0';

  return `${name}|${counts}|${texts}|${founded}|${more}|${ratings}|${cnpj}|${name}|70`;
}

describe('loadReference with the published files', { skip: missingDataReason }, () => {
  test('loads every bank and employer row', async () => {
    const counts = await loadReference(database.pool, REAL_FILES, logger);

    // 1,474 banks; 34 rows in the first employer file and 5 in the second.
    assert.deepEqual(counts, { bancoCount: 1474, empregadoCount: 39 });
    assert.equal(await countRows('trusted.bancos'), 1474);
    assert.equal(await countRows('trusted.empregados'), 39);
  });

  test('pads CNPJ 0 and normalizes the bank name', async () => {
    await loadReference(database.pool, REAL_FILES, logger);

    const result = await database.pool.query(
      "SELECT segmento, cnpj, nome FROM trusted.bancos WHERE cnpj = '00000000'",
    );

    // Lines 2 and 1456 of the bank file: `S1	0	BANCO DO BRASIL - PRUDENCIAL` and
    // `S1	0	BANCO DO BRASIL S/A`.
    const bank = { segmento: 'S1', cnpj: '00000000', nome: 'BANCO DO BRASIL' };

    assert.deepEqual(result.rows, [bank, bank]);
  });

  test('normalizes ITAU - PRUDENCIAL to ITAU', async () => {
    await loadReference(database.pool, REAL_FILES, logger);

    const result = await database.pool.query(
      "SELECT segmento, cnpj, nome FROM trusted.bancos WHERE nome = 'ITAU'",
    );

    // The bank file lists `S1	60872504	ITAU - PRUDENCIAL`.
    assert.deepEqual(result.rows, [{ segmento: 'S1', cnpj: '60872504', nome: 'ITAU' }]);
  });

  test('keeps U+FFFD in bank names', async () => {
    await loadReference(database.pool, REAL_FILES, logger);

    const result = await database.pool.query(
      "SELECT nome FROM trusted.bancos WHERE cnpj = '16927221'",
    );

    // The bank file lists `S4	16927221	AMAZ\uFFFDNIA CC LTDA.`.
    assert.deepEqual(result.rows, [{ nome: 'AMAZ\uFFFDNIA CC' }]);
  });

  test('converts the columns of an employer row', async () => {
    await loadReference(database.pool, REAL_FILES, logger);

    // BNP Paribas, line 2 of the first employer file, which has no CNPJ column.
    const result = await database.pool.query(
      "SELECT * FROM trusted.empregados WHERE employer_name = 'BNP Paribas'",
    );

    assert.deepEqual(result.rows, [
      {
        employer_name: 'BNP Paribas',
        reviews_count: '13000',
        culture_count: '4100',
        salaries_count: '20000',
        benefits_count: '3600',
        employerwebsite: 'http://www.group.bnpparibas',
        employerheadquarters: 'Paris, França',
        employerfounded: 2000,
        employerindustry:
          '/Explorar/melhores-serviços-bancários-e-de-crédito-empresas_II.9,40_IIND200048.htm',
        // The file has a no-break space after `US$`; only white space at the ends is trimmed.
        employerrevenue: 'Mais de US$\u00A010 bilhões',
        url:
          'https://www.glassdoor.com.br/Vis%C3%A3o-geral/' +
          'Trabalhar-na-BNP-Paribas-EI_IE10342.13,24.htm',
        geral: 3.8,
        cultura_e_valores: 3.7,
        diversidade_e_inclusao: 4,
        qualidade_de_vida: 3.8,
        alta_lideranca: 3.4,
        remuneracao_e_beneficios: 3.4,
        oportunidades_de_carreira: 3.5,
        recomendam_para_outras_pessoas: 77,
        perspectiva_positiva_da_empresa: 63,
        segmento: 'S3',
        cnpj: null,
        nome: 'BNP PARIBAS',
        match_percent: 100,
      },
    ]);
  });

  test('pads the CNPJ of the second employer file and leaves its segmento null', async () => {
    await loadReference(database.pool, REAL_FILES, logger);

    // Apex Group, line 2 of the second file: CNPJ 655522, no Segmento column.
    const result = await database.pool.query(
      'SELECT segmento, cnpj, nome, reviews_count FROM trusted.empregados ' +
        "WHERE cnpj IS NOT NULL AND employer_name = 'Apex Group'",
    );

    assert.deepEqual(result.rows, [
      { segmento: null, cnpj: '00655522', nome: 'APE POUPEX', reviews_count: '450' },
    ]);
  });

  test('stores an empty employer-founded as null', async () => {
    await loadReference(database.pool, REAL_FILES, logger);

    const result = await database.pool.query(
      "SELECT employerfounded FROM trusted.empregados WHERE employer_name = 'BTG Pactual'",
    );

    assert.deepEqual(result.rows, [{ employerfounded: null }]);
  });

  test('replaces the rows of a previous load', async () => {
    await loadReference(database.pool, REAL_FILES, logger);
    await loadReference(database.pool, REAL_FILES, logger);

    assert.equal(await countRows('trusted.bancos'), 1474);
    assert.equal(await countRows('trusted.empregados'), 39);
  });

  test('waits for a concurrent load instead of adding to its rows', async () => {
    // A pool of its own, ended here, so that no second connection is left for the drop.
    const pool = createPool(database.config, 2);

    try {
      await Promise.all([
        loadReference(pool, REAL_FILES, logger),
        loadReference(pool, REAL_FILES, logger),
      ]);
    } finally {
      await pool.end();
    }

    assert.equal(await countRows('trusted.bancos'), 1474);
    assert.equal(await countRows('trusted.empregados'), 39);
  });

  test('keeps the previous rows when a file has an invalid value', async () => {
    await loadReference(database.pool, REAL_FILES, logger);

    const bankText = await readFile(BANCOS_PATH, 'utf8');
    const badBancos = `${bankText}S5\t12X\tBANCO Y\n`;
    const badBancosPath = await writeTestFile('bancos-bad-cnpj.tsv', badBancos);
    const options = { bancosPath: badBancosPath, empregadosPaths: EMPREGADOS_PATHS };

    await assert.rejects(loadReference(database.pool, options, logger), (error: Error) => {
      assert.ok(error instanceof LoadReferenceError);
      assert.equal(error.path, badBancosPath);
      assert.equal(error.lineNumber, 1476);
      assert.match(error.message, /invalid cnpj "12X" in .*bancos-bad-cnpj\.tsv line 1476/);
      assert.match(error.message, /fix the value or leave it empty/);

      return true;
    });
    assert.equal(await countRows('trusted.bancos'), 1474);
    assert.equal(await countRows('trusted.empregados'), 39);
  });

  test('keeps the previous rows when an employer file is missing', async () => {
    await loadReference(database.pool, REAL_FILES, logger);

    const missingPath = join(folder, 'missing.csv');
    const empregadosPaths = [...EMPREGADOS_PATHS, missingPath];
    const options = { bancosPath: BANCOS_PATH, empregadosPaths };

    await assert.rejects(loadReference(database.pool, options, logger), /missing\.csv.*ENOENT/);
    assert.equal(await countRows('trusted.bancos'), 1474);
    assert.equal(await countRows('trusted.empregados'), 39);
  });
});

describe('loadReference with small files', () => {
  const BANCOS = 'Segmento\tCNPJ\tNome\nS1\t0\tBANCO DO BRASIL - PRUDENCIAL\n';
  let loadCount = 0;

  /** Writes a bank file and one employer file with a unique name prefix, then loads them. */
  async function loadFiles(bancos: string, empregados: string) {
    loadCount += 1;

    const bancosPath = await writeTestFile(`bancos-${loadCount}.tsv`, bancos);
    const empregadosPath = await writeTestFile(`empregados-${loadCount}.csv`, empregados);

    return loadReference(database.pool, { bancosPath, empregadosPaths: [empregadosPath] }, logger);
  }

  test('reports the file, line and column of an invalid employer value', async () => {
    const empregados = [
      EMPLOYER_HEADER,
      employerLine('A', '2000.0', '1'),
      employerLine('B', '1990.5', '2'),
    ].join('\n');

    await assert.rejects(loadFiles(BANCOS, empregados), (error: Error) => {
      assert.ok(error instanceof LoadReferenceError);
      assert.equal(error.lineNumber, 3);
      assert.match(error.message, /invalid employerfounded "1990\.5" in .*empregados-\d+\.csv/);
      assert.match(error.message, /\.csv line 3: expected a whole number, such as 1990 or 1990\.0/);

      return true;
    });
  });

  test('counts the other invalid values in the message', async () => {
    const bancos = `${BANCOS}S2\tX\tA\nS3\tY\tB\n`;

    await assert.rejects(
      loadFiles(bancos, `${EMPLOYER_HEADER}\n${employerLine('A', '2000', '1')}\n`),
      /invalid cnpj "X" in .* line 3 \(and 1 more invalid values\)/,
    );
  });

  test('rejects an employer file with an unknown column', async () => {
    await assert.rejects(
      loadFiles(BANCOS, 'employer_name|stars\nA|5\n'),
      /the header of .*empregados-\d+\.csv has unknown columns stars/,
    );
  });

  test('rejects a bank file without the nome column', async () => {
    await assert.rejects(
      loadFiles('Segmento\tCNPJ\nS1\t0\n', 'employer_name\nA\n'),
      /the header of .*bancos-\d+\.tsv has missing columns nome/,
    );
  });

  test('rejects a header-only file with an unknown column', async () => {
    await assert.rejects(
      loadFiles(BANCOS, 'employer_name|stars\n'),
      /the header of .*empregados-\d+\.csv has unknown columns stars/,
    );
  });

  test('rejects a load without employer files', async () => {
    const bancosPath = await writeTestFile('bancos-alone.tsv', BANCOS);

    await assert.rejects(
      loadReference(database.pool, { bancosPath, empregadosPaths: [] }, logger),
      /no employer file given/,
    );
  });

  test('rejects a bank file without data rows', async () => {
    await assert.rejects(
      loadFiles('Segmento\tCNPJ\tNome\n', 'employer_name\nA\n'),
      /bancos-\d+\.tsv has no data rows; a load replaces the whole trusted\.bancos table/,
    );
  });

  test('stores tabs and backslashes of a value unchanged', async () => {
    await loadFiles(BANCOS, 'employer_name|url|employer-website\nA\\B|x\\ty|a\tb\n');

    const result = await database.pool.query(
      'SELECT employer_name, url, employerwebsite FROM trusted.empregados',
    );

    assert.deepEqual(result.rows, [
      { employer_name: 'A\\B', url: 'x\\ty', employerwebsite: 'a\tb' },
    ]);
  });
});

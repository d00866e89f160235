import type pg from 'pg';

/**
 * Synthetic institutions. The delivery query joins aggregates to employer profiles with an OR
 * condition (same CNPJ or same name), which PostgreSQL can only run as a nested loop. Its cost
 * grows with aggregates times profiles, so few institutions keep it small.
 */
const INSTITUTION_COUNT = 20;

/** Employer profiles per institution: each aggregate becomes this many report rows. */
const EMPLOYERS_PER_INSTITUTION = 10;

/** The published bank list has about this many rows; the rest of ours match nothing. */
const BANK_ROW_COUNT = 1474;

/** Employers that match no bank and so no aggregate, as many real ones do. */
const UNMATCHED_EMPLOYER_COUNT = 50;

const YEAR_COUNT = 25;
const QUARTER_COUNT = 4;

/** One event in this many is sent a second time, so that deduplication has work. */
const DUPLICATE_EVERY = 20;

/** One event in this many carries an índice that does not parse, as a few published rows do. */
const INVALID_INDEX_EVERY = 1000;

/** The generated input and the report size it must produce. */
export type DeliveryData = {
  eventCount: number;
  aggregateCount: number;
  expectedRowCount: number;
};

// Institution i has CNPJ root 1000000 + 37 i, written without its leading zero as the
// published files do, and the name BANCO SINTÉTICO i S.A., which normalizes to
// BANCO SINTETICO i. Event n belongs to institution n % institutions. The rest of n picks
// the quarter, the year and a category, so that no two events share an aggregate key. The
// índice is a Brazilian decimal such as 9.999,83.
const INSERT_EVENTS = `
  INSERT INTO events.reclamacoes_sqs_events (message_id, receipt_handle, md5_body, body)
  SELECT 'bench-' || n, 'bench-handle-' || n, md5(body::text), body
  FROM (
    SELECT n, jsonb_build_object(
      'ano', (2000 + (n / $2 / ${QUARTER_COUNT}) % ${YEAR_COUNT})::text,
      'trimestre', ((n / $2) % ${QUARTER_COUNT} + 1)::text || 'º',
      'categoria', 'Demais Bancos, Financeiras e Instituições de Pagamento ' ||
        (n / $2 / ${QUARTER_COUNT} / ${YEAR_COUNT}),
      'tipo', 'Banco/financeira',
      'cnpj_if', (1000000 + 37 * (n % $2))::text,
      'instituicao_financeira', 'BANCO SINTÉTICO ' || (n % $2) || ' S.A.',
      'indice', CASE WHEN n % ${INVALID_INDEX_EVERY} = 7 THEN 'n/d'
        ELSE translate(to_char((n % 999983) / 100.0, 'FM999,990.00'), ',.', '.,') END,
      'quantidade_de_reclamacoes_reguladas_procedentes', (n % 500)::text,
      'quantidade_de_reclamacoes_reguladas_outras', CASE WHEN n % 3 = 0 THEN NULL
        ELSE (n % 120)::text END,
      'quantidade_de_reclamacoes_nao_reguladas', CASE WHEN n % 5 = 0 THEN ' '
        ELSE (n % 80)::text END,
      'quantidade_total_de_reclamacoes', (n % 700)::text,
      'quantidade_total_de_clientes_ccs_e_scr', (100000 + n % 900000)::text,
      'quantidade_de_clientes_ccs', (90000 + n % 800000)::text,
      'quantidade_de_clientes_scr', CASE WHEN n % 7 = 0 THEN NULL
        ELSE (50000 + n % 600000)::text END
    ) AS body
    FROM generate_series(0, $1 - 1) AS n
  ) AS generated`;

// A second delivery of every DUPLICATE_EVERY-th event: same body and md5, another message id.
const INSERT_DUPLICATES = `
  INSERT INTO events.reclamacoes_sqs_events (message_id, receipt_handle, md5_body, body)
  SELECT 'bench-duplicate-' || substr(message_id, 7), receipt_handle, md5_body, body
  FROM events.reclamacoes_sqs_events
  WHERE substr(message_id, 7)::bigint % ${DUPLICATE_EVERY} = 0`;

// Per institution the prudential conglomerate and the legal entity share one CNPJ, as in the
// published list; the remaining rows are banks of their own.
const INSERT_BANKS = `
  INSERT INTO trusted.bancos (segmento, cnpj, nome)
  SELECT 'S' || (i % 5 + 1), lpad((1000000 + 37 * i)::text, 8, '0'),
    trusted.normalize_name('BANCO SINTÉTICO ' || i || suffix)
  FROM generate_series(0, $1 - 1) AS i
  CROSS JOIN (VALUES (' - PRUDENCIAL'), (' S.A.')) AS suffixes (suffix)
  UNION ALL
  SELECT 'S5', lpad((50000000 + i)::text, 8, '0'), 'FINANCEIRA AVULSA ' || i
  FROM generate_series(1, $2) AS i`;

// Half the employers carry the institution's CNPJ, the other half only its name, like the two
// employer files; both match the same bank.
const INSERT_EMPLOYERS = `
  INSERT INTO trusted.empregados (
    employer_name, reviews_count, culture_count, salaries_count, benefits_count,
    employerwebsite, employerheadquarters, employerfounded, employerindustry, employerrevenue,
    url, geral, cultura_e_valores, diversidade_e_inclusao, qualidade_de_vida, alta_lideranca,
    remuneracao_e_beneficios, oportunidades_de_carreira, recomendam_para_outras_pessoas,
    perspectiva_positiva_da_empresa, segmento, cnpj, nome, match_percent)
  SELECT 'Empregador Sintético ' || i || '-' || j, 100 + 37 * j, 40 + j, 200 + 11 * j, 30 + j,
    'http://www.empregador-' || i || '-' || j || '.example', 'São Paulo, Brasil', 1950 + j,
    '/Explorar/melhores-serviços-bancários-e-de-crédito-empresas', 'Mais de US$ 10 bilhões',
    'https://www.glassdoor.example/Trabalhar-na-' || i || '-' || j,
    3.0 + j / 10.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 70.0 + j, 60.0 + j,
    NULL,
    CASE WHEN j % 2 = 0 THEN lpad((1000000 + 37 * i)::text, 8, '0') END,
    trusted.normalize_name('BANCO SINTÉTICO ' || i), 90 + j
  FROM generate_series(0, $1 - 1) AS i
  CROSS JOIN generate_series(0, $2 - 1) AS j
  UNION ALL
  SELECT 'Empregador Avulso ' || i, 10, 1, 2, 3, NULL, 'Rio de Janeiro, Brasil', NULL, NULL,
    NULL, NULL, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 50.0, 50.0, NULL, NULL,
    'EMPREGADOR AVULSO ' || i, 40
  FROM generate_series(1, $3) AS i`;

/**
 * Replaces the events and the trusted tables with synthetic rows of the published shapes,
 * sized so that the delivery query returns `targetRows` rounded up to a multiple of the
 * employers per institution.
 */
export async function fillDeliveryData(pool: pg.Pool, targetRows: number): Promise<DeliveryData> {
  const aggregateCount = Math.ceil(targetRows / EMPLOYERS_PER_INSTITUTION);

  await pool.query('TRUNCATE events.reclamacoes_sqs_events, trusted.bancos, trusted.empregados');
  await pool.query(INSERT_EVENTS, [aggregateCount, INSTITUTION_COUNT]);
  await pool.query(INSERT_DUPLICATES);
  await pool.query(INSERT_BANKS, [INSTITUTION_COUNT, BANK_ROW_COUNT - 2 * INSTITUTION_COUNT]);
  await pool.query(INSERT_EMPLOYERS, [
    INSTITUTION_COUNT,
    EMPLOYERS_PER_INSTITUTION,
    UNMATCHED_EMPLOYER_COUNT,
  ]);
  await pool.query('ANALYZE events.reclamacoes_sqs_events, trusted.bancos, trusted.empregados');

  const { rows } = await pool.query<{ count: string }>(
    'SELECT count(*) FROM events.reclamacoes_sqs_events',
  );

  return {
    eventCount: Number(rows[0]?.count),
    aggregateCount,
    expectedRowCount: aggregateCount * EMPLOYERS_PER_INSTITUTION,
  };
}

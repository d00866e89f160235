import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { migrate } from '../src/postgres.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';

let database: TestDatabase;

before(async () => {
  database = await createTestDatabase();
});

after(async () => {
  await database.drop();
});

/** Calls a one-argument function of sql/functions.sql on a text value. */
async function call(functionName: string, value: string | null): Promise<unknown> {
  const result = await database.pool.query<{ result: unknown }>(
    `SELECT trusted.${functionName}($1::text) AS result`,
    [value],
  );

  return result.rows[0]?.result;
}

describe('trusted.normalize_name', () => {
  // The examples of the report contract, verbatim.
  const contractExamples: Array<[string, string]> = [
    ['ABC-BRASIL (conglomerado)', 'ABC-BRASIL'],
    ['ITAU - PRUDENCIAL', 'ITAU'],
    ['BANCO FIBRA S.A. - PRUDENCIAL', 'BANCO FIBRA'],
    ['BANCO SAFRA S/A', 'BANCO SAFRA'],
    ['BANCO SANTADER S/A.', 'BANCO SANTADER'],
    ['BANCO DO ESTADO DO RIO GRANDE DO SUL SA', 'BANCO DO ESTADO DO RIO GRANDE DO SUL'],
    ['ACESSO SOLUÇÕES DE PAGAMENTO S.A.', 'ACESSO SOLUCOES DE PAGAMENTO'],
    [
      'AGORACRED S/A SOCIEDADE DE CRÉDITO, FINANCIAMENTO E INVESTIMENTO',
      'AGORACRED S/A SOCIEDADE DE CREDITO, FINANCIAMENTO E INVESTIMENTO',
    ],
    ['BANCO SANTANDER (BRASIL) S/A', 'BANCO SANTANDER (BRASIL)'],
    ['AMAZ\uFFFDNIA CC LTDA.', 'AMAZ\uFFFDNIA CC'],
    ['Caixa Econômica Federal', 'CAIXA ECONOMICA FEDERAL'],
  ];

  for (const [input, expected] of contractExamples) {
    test(`normalizes ${JSON.stringify(input)}`, async () => {
      assert.equal(await call('normalize_name', input), expected);
    });
  }

  test('removes each suffix of the list', async () => {
    const suffixes = ['(CONGLOMERADO)', 'PRUDENCIAL', 'CFI', 'LTDA', 'LTDA.', 'S.A.', 'S.A'];

    for (const suffix of [...suffixes, 'S/A', 'S/A.', 'SA']) {
      assert.equal(await call('normalize_name', `BANCO X ${suffix}`), 'BANCO X', suffix);
    }
  });

  test('trims and collapses tabs, line breaks and no-break spaces', async () => {
    const name = '\t banco\u00A0\u00A0do\n\r\nbrasil \u00A0';

    assert.equal(await call('normalize_name', name), 'BANCO DO BRASIL');
    assert.equal(await call('normalize_name', 'A\u000B\u000C\u0085\u2028\u2029B'), 'A B');
  });

  test('removes repeated suffixes until none is left', async () => {
    assert.equal(await call('normalize_name', 'BANCO X S.A. SA - LTDA. - PRUDENCIAL'), 'BANCO X');
  });

  test('removes commas and hyphens before a suffix', async () => {
    assert.equal(await call('normalize_name', 'BANCO X, S.A.'), 'BANCO X');
    assert.equal(await call('normalize_name', 'BANCO X -SA'), 'BANCO X');
    assert.equal(await call('normalize_name', 'BANCO X-SA'), 'BANCO X');
  });

  test('keeps a suffix in the middle of the name', async () => {
    assert.equal(await call('normalize_name', 'BANCO S.A. DE CREDITO'), 'BANCO S.A. DE CREDITO');
  });

  test('keeps a suffix that no space or hyphen precedes', async () => {
    assert.equal(await call('normalize_name', 'BANCO XSA'), 'BANCO XSA');
    assert.equal(await call('normalize_name', 'BANCO X,SA'), 'BANCO X,SA');
    assert.equal(await call('normalize_name', 'SA'), 'SA');
  });

  test('keeps a suffix that a trailing comma follows', async () => {
    // Suffixes are removed before the final trim, so `LTDA,` is not at the end.
    assert.equal(await call('normalize_name', 'BANCO X LTDA,'), 'BANCO X LTDA');
  });

  test('trims hyphens and commas at both ends', async () => {
    assert.equal(await call('normalize_name', ' -, BANCO X ,- '), 'BANCO X');
  });

  test('upper-cases Latin letters that do not decompose', async () => {
    assert.equal(await call('normalize_name', 'æ ø œ ð þ ł đ ß ı'), 'Æ Ø Œ Ð Þ Ł Đ SS I');
  });

  test('removes accents from letters of any case', async () => {
    assert.equal(await call('normalize_name', 'ÁÉÍÓÚ àèìòù ç Ç ñ ÿ'), 'AEIOU AEIOU C C N Y');
  });

  test('returns null for an empty name', async () => {
    assert.equal(await call('normalize_name', ''), null);
  });

  test('returns null for a name that is only white space', async () => {
    assert.equal(await call('normalize_name', ' \t\u00A0\n'), null);
  });

  test('returns null for a name that is only a suffix', async () => {
    assert.equal(await call('normalize_name', '- PRUDENCIAL'), null);
  });

  test('returns null for null', async () => {
    assert.equal(await call('normalize_name', null), null);
  });
});

describe('trusted.clean_text', () => {
  test('trims white space at both ends only', async () => {
    assert.equal(await call('clean_text', '\u00A0 1º \t'), '1º');
    assert.equal(await call('clean_text', ' Top  10 '), 'Top  10');
  });

  test('returns null for a blank value', async () => {
    assert.equal(await call('clean_text', ' '), null);
    assert.equal(await call('clean_text', ''), null);
  });
});

describe('trusted.parse_br_decimal', () => {
  const cases: Array<[string | null, number | null]> = [
    ['54,79', 54.79],
    ['1.234,56', 1234.56],
    ['1.234.567,8', 1234567.8],
    ['1234,56', 1234.56],
    ['12.500', 12500],
    ['0', 0],
    ['-3,5', -3.5],
    ['+3,5', 3.5],
    [' \t54,79\u00A0', 54.79],
    ['12.5', null],
    ['1234.567', null],
    ['1.23,4', null],
    ['.123', null],
    ['1,', null],
    [',5', null],
    ['1,2,3', null],
    ['54.79', null],
    ['1e3', null],
    ['- 1', null],
    ['abc', null],
    [' ', null],
    ['', null],
    [null, null],
  ];

  for (const [input, expected] of cases) {
    test(`parses ${JSON.stringify(input)} as ${expected}`, async () => {
      assert.equal(await call('parse_br_decimal', input), expected);
    });
  }

  test('returns null beyond the largest double', async () => {
    assert.equal(await call('parse_br_decimal', `1${'0'.repeat(400)}`), null);
  });

  test('returns null below the smallest positive double', async () => {
    assert.equal(await call('parse_br_decimal', `0,${'0'.repeat(400)}1`), null);
  });

  test('parses many leading and trailing zeros', async () => {
    const padded = `${'0'.repeat(20_000)}7,5${'0'.repeat(20_000)}`;

    assert.equal(await call('parse_br_decimal', padded), 7.5);
  });
});

describe('trusted.parse_decimal', () => {
  test('parses a decimal with a point', async () => {
    assert.equal(await call('parse_decimal', '3.8'), 3.8);
    assert.equal(await call('parse_decimal', '52.0'), 52);
    assert.equal(await call('parse_decimal', '100'), 100);
  });

  test('returns null for a comma, grouping or exponent', async () => {
    assert.equal(await call('parse_decimal', '3,8'), null);
    assert.equal(await call('parse_decimal', '1.234.5'), null);
    assert.equal(await call('parse_decimal', '1e3'), null);
  });
});

describe('trusted.parse_integer', () => {
  const cases: Array<[string | null, string | null]> = [
    ['26230', '26230'],
    [' 42 ', '42'],
    ['-7', '-7'],
    ['+7', '7'],
    ['007', '7'],
    ['9223372036854775807', '9223372036854775807'],
    ['-9223372036854775808', '-9223372036854775808'],
    [`${'0'.repeat(100)}9223372036854775807`, '9223372036854775807'],
    ['9223372036854775808', null],
    ['-9223372036854775809', null],
    ['99999999999999999999', null],
    ['1.000', null],
    ['1,0', null],
    ['1e3', null],
    ['0x1F', null],
    ['1_000', null],
    ['--1', null],
    ['+', null],
    [' ', null],
    ['', null],
    [null, null],
  ];

  // node-postgres returns bigint as a string, so the expected values are strings.
  for (const [input, expected] of cases) {
    test(`parses ${JSON.stringify(input)} as ${expected}`, async () => {
      assert.equal(await call('parse_integer', input), expected);
    });
  }
});

describe('trusted.parse_int4', () => {
  test('parses a value in the integer range', async () => {
    assert.equal(await call('parse_int4', '2021'), 2021);
    assert.equal(await call('parse_int4', '-2147483648'), -2147483648);
  });

  test('returns null outside the integer range', async () => {
    assert.equal(await call('parse_int4', '2147483648'), null);
  });
});

describe('trusted.parse_float_as_integer', () => {
  test('parses a whole number with or without .0', async () => {
    assert.equal(await call('parse_float_as_integer', '2000.0'), 2000);
    assert.equal(await call('parse_float_as_integer', '1808'), 1808);
  });

  test('returns null for a fraction or a blank value', async () => {
    assert.equal(await call('parse_float_as_integer', '2000.5'), null);
    assert.equal(await call('parse_float_as_integer', ''), null);
  });
});

describe('trusted.format_cnpj', () => {
  const cases: Array<[string | null, string | null]> = [
    ['0', '00000000'],
    ['5192316', '05192316'],
    ['05192316', '05192316'],
    ['60746948', '60746948'],
    [' 360305 ', '00360305'],
    ['123456789', null],
    ['60.746.948', null],
    ['12a', null],
    ['-1', null],
    [' ', null],
    ['', null],
    [null, null],
  ];

  for (const [input, expected] of cases) {
    test(`formats ${JSON.stringify(input)} as ${expected}`, async () => {
      assert.equal(await call('format_cnpj', input), expected);
    });
  }
});

describe('sql/functions.sql', () => {
  test('applies again over itself', async () => {
    // createTestDatabase has migrated once already.
    await migrate(database.pool);
  });
});

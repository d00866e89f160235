import type { DelimitedFileOptions } from './sources/delimited-file.ts';

/** A reference file that cannot be loaded. The tables keep their previous rows. */
export class LoadReferenceError extends Error {
  override name = 'LoadReferenceError';

  /** The file at fault, when one is. */
  readonly path: string | undefined;

  /** Line of the file at fault, when one is. */
  readonly lineNumber: number | undefined;

  constructor(message: string, path?: string, lineNumber?: number, options?: ErrorOptions) {
    super(`loading reference data failed: ${message}`, options);
    this.path = path;
    this.lineNumber = lineNumber;
  }
}

/** Conversion of a column from the text of the file to its type in the table. */
export type ColumnKind = {
  /** SQL function that converts the text; blank text becomes null. */
  convert: string;
  /** A valid value, for error messages; set where convert returns null for invalid text. */
  expected?: string;
};

const TEXT: ColumnKind = { convert: 'trusted.clean_text' };
const NAME: ColumnKind = { convert: 'trusted.normalize_name' };
const CNPJ: ColumnKind = {
  convert: 'trusted.format_cnpj',
  expected: 'a CNPJ root of up to 8 digits, such as 60746948',
};
const COUNT: ColumnKind = {
  convert: 'trusted.parse_integer',
  expected: 'an integer, such as 1300',
};
const RATING: ColumnKind = {
  convert: 'trusted.parse_decimal',
  expected: 'a decimal number with "." as the decimal mark, such as 3.8',
};
const YEAR: ColumnKind = {
  convert: 'trusted.parse_float_as_integer',
  expected: 'a whole number, such as 1990 or 1990.0',
};

/** A reference table and the files that fill it. */
export type ReferenceTable = {
  table: string;
  /** Temporary table that receives the raw text of the files by COPY. */
  stagingTable: string;
  /** Every column of the table, in table order, by field name as derived from the header. */
  columns: ReadonlyArray<readonly [string, ColumnKind]>;
  /** Columns that every file must have; the others are null where a file lacks them. */
  requiredColumns: readonly string[];
  format: Pick<DelimitedFileOptions, 'encoding' | 'separator'>;
};

/** The central bank's institution list: UTF-8, tab-separated, header `Segmento CNPJ Nome`. */
export const BANCOS: ReferenceTable = {
  table: 'trusted.bancos',
  stagingTable: 'bancos_file',
  columns: [
    ['segmento', TEXT],
    ['cnpj', CNPJ],
    ['nome', NAME],
  ],
  requiredColumns: ['segmento', 'cnpj', 'nome'],
  format: { encoding: 'utf8', separator: '\t' },
};

/**
 * The Glassdoor employer files, UTF-8 and `|`-separated, which together form one table. One
 * file has `segmento` and no `cnpj`, the other the reverse. A column missing from a file is
 * null for its rows, so only employer_name is required.
 */
export const EMPREGADOS: ReferenceTable = {
  table: 'trusted.empregados',
  stagingTable: 'empregados_file',
  columns: [
    ['employer_name', TEXT],
    ['reviews_count', COUNT],
    ['culture_count', COUNT],
    ['salaries_count', COUNT],
    ['benefits_count', COUNT],
    ['employerwebsite', TEXT],
    ['employerheadquarters', TEXT],
    ['employerfounded', YEAR],
    ['employerindustry', TEXT],
    ['employerrevenue', TEXT],
    ['url', TEXT],
    ['geral', RATING],
    ['cultura_e_valores', RATING],
    ['diversidade_e_inclusao', RATING],
    ['qualidade_de_vida', RATING],
    ['alta_lideranca', RATING],
    ['remuneracao_e_beneficios', RATING],
    ['oportunidades_de_carreira', RATING],
    ['recomendam_para_outras_pessoas', RATING],
    ['perspectiva_positiva_da_empresa', RATING],
    ['segmento', TEXT],
    ['cnpj', CNPJ],
    ['nome', NAME],
    ['match_percent', RATING],
  ],
  requiredColumns: ['employer_name'],
  format: { encoding: 'utf8', separator: '|' },
};

/**
 * Throws a LoadReferenceError when the header of a file has a column the table does not know
 * or lacks one of its required columns.
 */
export function checkReferenceHeader(
  fieldNames: string[],
  reference: ReferenceTable,
  path: string,
): void {
  const known = reference.columns.map(([name]) => name);
  const unknown = fieldNames.filter((name) => !known.includes(name));
  const missing = reference.requiredColumns.filter((name) => !fieldNames.includes(name));

  if (unknown.length === 0 && missing.length === 0) {
    return;
  }

  const problems = [
    unknown.length > 0 ? `unknown columns ${unknown.join(', ')}` : '',
    missing.length > 0 ? `missing columns ${missing.join(', ')}` : '',
  ].filter((problem) => problem !== '');

  throw new LoadReferenceError(
    `the header of ${path} has ${problems.join(' and ')}; a file for ${reference.table} ` +
      `may have the columns ${known.join(', ')}`,
    path,
  );
}

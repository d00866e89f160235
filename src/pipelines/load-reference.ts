import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import type { Logger } from '../logger.ts';
import {
  BANCOS,
  checkReferenceHeader,
  EMPREGADOS,
  LoadReferenceError,
  type ReferenceTable,
} from '../reference-tables.ts';
import { ReferenceLoad } from '../sinks/postgres-reference.ts';
import { readDelimitedFile } from '../sources/delimited-file.ts';
import { createReferenceCopyRowsTransform } from '../transforms/reference-copy-rows.ts';

export { LoadReferenceError } from '../reference-tables.ts';

/** Files that replace the reference tables. */
export type LoadReferenceOptions = {
  /** The central bank's institution list: UTF-8, tab-separated, header `Segmento CNPJ Nome`. */
  bancosPath: string;
  /** The Glassdoor employer files, UTF-8 and `|`-separated, which together form one table. */
  empregadosPaths: string[];
};

/** Rows stored in trusted.bancos and trusted.empregados. */
export type ReferenceCounts = { bancoCount: number; empregadoCount: number };

/**
 * Replaces trusted.bancos and trusted.empregados with the contents of the reference files, in
 * one transaction: delimited file → COPY rows → staging table, for each file, then one commit
 * that checks and converts the values (see ReferenceLoad). On any error, invalid value or empty
 * file both tables keep their previous rows. Names are normalized with trusted.normalize_name
 * and CNPJs padded with trusted.format_cnpj, so that the delivery query can join them.
 */
export async function loadReference(
  pool: pg.Pool,
  options: LoadReferenceOptions,
  logger: Logger,
): Promise<ReferenceCounts> {
  if (options.empregadosPaths.length === 0) {
    throw new LoadReferenceError(
      'no employer file given; a load replaces the whole trusted.empregados table, so pass at ' +
        'least one',
    );
  }

  const startedAt = performance.now();
  const load = await ReferenceLoad.begin(pool, logger);
  const files: Array<[ReferenceTable, string]> = [
    [BANCOS, options.bancosPath],
    ...options.empregadosPaths.map((path): [ReferenceTable, string] => [EMPREGADOS, path]),
  ];

  try {
    for (const [reference, path] of files) {
      await copyFile(load, reference, path);
      load.rejectEmptyFile();
    }
  } catch (error) {
    await load.rollBack();

    throw error;
  }

  const counts = await load.commit();
  const result = {
    bancoCount: counts.get(BANCOS) ?? 0,
    empregadoCount: counts.get(EMPREGADOS) ?? 0,
  };

  logger.info(
    { stage: 'load-reference', ...result, durationMs: Math.round(performance.now() - startedAt) },
    'reference data loaded',
  );

  return result;
}

/** Streams one file into the staging table of its reference table. */
async function copyFile(load: ReferenceLoad, reference: ReferenceTable, path: string) {
  const records = readDelimitedFile({
    path,
    ...reference.format,
    onHeader: (fieldNames) => checkReferenceHeader(fieldNames, reference, path),
  });

  try {
    await pipeline(
      Readable.from(records),
      createReferenceCopyRowsTransform(reference, path),
      await load.createFileSink(reference, path),
    );
  } catch (error) {
    if (error instanceof LoadReferenceError) {
      throw error;
    }

    throw new LoadReferenceError((error as Error).message, path, undefined, { cause: error });
  }
}

/**
 * One measured export, in a process of its own. The settings come from the environment as for
 * the tool itself (POSTGRES_*, AWS_*, S3_BUCKET_NAME and the tuning variables). TMPDIR should
 * name a folder of this run's own: the worker samples the size of the export's folders in it
 * as the export's temporary disk use, and checks that the export removes them. The last line
 * of its output is an ExportWorkerResult.
 */
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createS3Client } from '../../src/aws.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { runExport, type ExportResult } from '../../src/pipelines/export.ts';
import { createPool } from '../../src/postgres.ts';
import { measure, RSS_SAMPLE_INTERVAL_MS, type Measurement } from './measure.ts';

export type ExportWorkerResult = {
  export: ExportResult;
  measurement: Measurement;
  /** Largest total size of the files under TMPDIR seen while the export ran. */
  peakTempBytes: number;
  /** Bytes left under TMPDIR once the export returned; 0 when it cleaned up. */
  leftTempBytes: number;
};

/** Connections of the export: the snapshot that streams the query, and the run records. */
const EXPORT_CONNECTIONS = 2;

/** Prefix of the temporary folders runExport creates; tsx keeps its cache beside them. */
const EXPORT_FOLDER_PREFIX = 'sqs-pg-parquet-export-';

/**
 * Adds up the sizes of the files below the export's folders in `folder`; files removed
 * meanwhile count as 0.
 */
async function exportFolderBytes(folder: string): Promise<number> {
  const allNames = await readdir(folder, { recursive: true }).catch(() => []);
  const names = allNames.filter((name) => name.startsWith(EXPORT_FOLDER_PREFIX));
  const sizes = await Promise.all(
    names.map((name) =>
      stat(join(folder, name)).then(
        (info) => (info.isFile() ? info.size : 0),
        () => 0,
      ),
    ),
  );

  return sizes.reduce((total, size) => total + size, 0);
}

async function main(): Promise<void> {
  const config = loadConfig(process.env, '');
  const logger = createLogger(config.logLevel);
  const pool = createPool(config, EXPORT_CONNECTIONS);
  const s3 = createS3Client(config);
  const tempFolder = tmpdir();
  let peakTempBytes = 0;
  let isSampling = false;

  // Samples are skipped while the previous one is still reading the folder.
  const sampler = setInterval(() => {
    if (!isSampling) {
      isSampling = true;
      void exportFolderBytes(tempFolder).then((bytes) => {
        peakTempBytes = Math.max(peakTempBytes, bytes);
        isSampling = false;
      });
    }
  }, RSS_SAMPLE_INTERVAL_MS);

  const { result, measurement } = await measure(() =>
    runExport({ config, logger, pool, s3, bucket: config.s3.bucket }),
  );

  clearInterval(sampler);

  const output: ExportWorkerResult = {
    export: result,
    measurement,
    peakTempBytes,
    leftTempBytes: await exportFolderBytes(tempFolder),
  };

  s3.destroy();
  await pool.end();
  process.stdout.write(`${JSON.stringify(output)}\n`);
}

await main();

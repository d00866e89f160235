import pino, { type Logger } from 'pino';

/** Paths whose values never reach a log line. */
export const REDACTED_PATHS = [
  'password',
  '*.password',
  'secretAccessKey',
  '*.secretAccessKey',
  'connectionString',
  '*.connectionString',
  'receiptHandle',
  '*.receiptHandle',
  'body',
  '*.body',
];

/**
 * Creates the root logger. Logs go to standard error so that standard output carries only a
 * command's own result, such as the URI of a written file.
 */
export function createLogger(level: string, destination = pino.destination(2)): Logger {
  return pino(
    {
      level,
      base: { service: 'sqs-pg-parquet' },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      serializers: { err: pino.stdSerializers.err },
    },
    destination,
  );
}

export type { Logger };

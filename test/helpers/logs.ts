import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/logger.ts';

/** One parsed pino line. */
export type LogLine = Record<string, unknown> & { level: number; msg: string };

/** A logger whose lines are kept in memory, for asserting on log fields. */
export type CapturedLogs = {
  logger: Logger;
  lines: LogLine[];
  /** Lines with exactly this message. */
  withMessage(message: string): LogLine[];
};

/** Creates a logger at `level` that parses each line it writes into `lines`. */
export function captureLogs(level = 'debug'): CapturedLogs {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (text !== '') {
          lines.push(JSON.parse(text) as LogLine);
        }
      }

      callback();
    },
  });

  return {
    logger: createLogger(level, destination as unknown as Parameters<typeof createLogger>[1]),
    lines,
    withMessage: (message) => lines.filter((line) => line.msg === message),
  };
}

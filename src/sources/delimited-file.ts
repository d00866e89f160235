import { createReadStream } from 'node:fs';
import { deriveFieldName } from '../field-names.ts';

/**
 * Maximum line length accepted by default, in characters. The input files have lines of a few
 * hundred characters, so a far longer one means a file without LF line endings or a binary file.
 */
export const DEFAULT_MAX_LINE_CHARS = 1024 * 1024;

/** The three bytes of a UTF-8 byte order mark. */
const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** `utf8`, or `latin1` for ISO-8859-1 (one byte per character, bytes 0x80 to 0x9F included). */
export type DelimitedFileEncoding = 'utf8' | 'latin1';

/** Options of readDelimitedFile. */
export type DelimitedFileOptions = {
  /** Path of the file to read. */
  path: string;
  /** Character encoding of the file. A UTF-8 byte order mark is skipped. */
  encoding: DelimitedFileEncoding;
  /** Field separator: one character, such as `;`, `|` or a tab. */
  separator: string;
  /** Maximum line length accepted, in characters. Default DEFAULT_MAX_LINE_CHARS. */
  maxLineChars?: number;
  /** Signal that stops the reading, after which the iteration throws an AbortError. */
  signal?: AbortSignal;
  /**
   * Called with the field names and line number of the header as soon as it is read, before
   * any data line and also when there is none. An error it throws ends the reading.
   */
  onHeader?: (fieldNames: string[], lineNumber: number) => void;
};

/** One data line of a delimited file. */
export type DelimitedRecord = {
  /** Line number in the file, from 1. The header is line 1 unless empty lines precede it. */
  lineNumber: number;
  /** Raw values, untrimmed, keyed by the field name deriveFieldName makes of each header. */
  values: Record<string, string>;
};

/** A delimited file that cannot be read or that does not match its header. */
export class DelimitedFileError extends Error {
  override name = 'DelimitedFileError';

  /** The file being read. */
  readonly path: string;

  /** Line of the problem, when it concerns one line. */
  readonly lineNumber: number | undefined;

  constructor(message: string, path: string, lineNumber?: number, options?: ErrorOptions) {
    super(message, options);
    this.path = path;
    this.lineNumber = lineNumber;
  }
}

/**
 * Reads a delimited text file with a header line and yields one record per data line, so
 * that large files stream. Accepts LF or CRLF line endings and skips empty lines. When the
 * header ends with a separator, as in `a;b;`, every line that ends with one has a trailing
 * separator that adds no field. Throws DelimitedFileError for a data line whose field count
 * differs from the header's, for an empty or repeated field name, and for a read or decoding
 * failure. An empty file yields nothing.
 *
 * NOTE: quoting is not supported, so a separator inside a value always splits it. None of the
 * published input files quote values.
 */
export async function* readDelimitedFile(
  options: DelimitedFileOptions,
): AsyncGenerator<DelimitedRecord> {
  validateOptions(options);

  const { separator } = options;
  let fieldNames: string[] | undefined;
  let hasTrailingSeparators = false;

  for await (const { line, lineNumber } of readLines(options)) {
    if (line === '') {
      continue;
    }

    if (fieldNames === undefined) {
      hasTrailingSeparators = line.endsWith(separator);

      const headers = splitFields(line, separator, hasTrailingSeparators);

      fieldNames = deriveFieldNames(headers, options.path, lineNumber);
      options.onHeader?.(fieldNames, lineNumber);
      continue;
    }

    const fields = splitFields(line, separator, hasTrailingSeparators);

    if (fields.length !== fieldNames.length) {
      throw new DelimitedFileError(
        `reading ${options.path} failed: line ${lineNumber} has ${fields.length} fields but ` +
          `the header has ${fieldNames.length}; check the separator, or fix or remove the line`,
        options.path,
        lineNumber,
      );
    }

    const values: Record<string, string> = {};

    fieldNames.forEach((name, index) => {
      values[name] = fields[index] ?? '';
    });

    yield { lineNumber, values };
  }
}

function validateOptions(options: DelimitedFileOptions): void {
  const { separator } = options;

  if ([...separator].length !== 1 || separator === '\n' || separator === '\r') {
    throw new DelimitedFileError(
      `invalid separator ${JSON.stringify(separator)} for ${options.path}: ` +
        'expected one character other than a line break, such as ";" or "\\t"',
      options.path,
    );
  }
}

/** Splits a line, first removing its trailing separator in a file that has them. */
function splitFields(line: string, separator: string, hasTrailingSeparators: boolean): string[] {
  if (hasTrailingSeparators && line.endsWith(separator)) {
    return line.slice(0, -separator.length).split(separator);
  }

  return line.split(separator);
}

function deriveFieldNames(headers: string[], path: string, lineNumber: number): string[] {
  const fieldNames = headers.map(deriveFieldName);

  fieldNames.forEach((name, index) => {
    if (name !== '' && fieldNames.indexOf(name) === index) {
      return;
    }

    const problem = name === '' ? 'has no letters or digits' : `repeats the field name "${name}"`;

    throw new DelimitedFileError(
      `reading ${path} failed: header ${JSON.stringify(headers[index])} in column ` +
        `${index + 1} ${problem}; rename it in the header line`,
      path,
      lineNumber,
    );
  });

  return fieldNames;
}

type NumberedLine = { line: string; lineNumber: number };

/** Decodes the file and yields its lines without their LF or CRLF ending. */
async function* readLines(options: DelimitedFileOptions): AsyncGenerator<NumberedLine> {
  const { path } = options;
  const maxLineChars = options.maxLineChars ?? DEFAULT_MAX_LINE_CHARS;
  const decode = createDecoder(options);
  let pending = '';
  let lineNumber = 0;

  try {
    for await (const chunk of createReadStream(path, { signal: options.signal })) {
      const lines = (pending + decode(chunk as Buffer, lineNumber + 1)).split('\n');

      pending = lines.pop() ?? '';

      for (const line of lines) {
        lineNumber += 1;
        rejectLongLine(line, lineNumber, maxLineChars, path);
        yield { line: removeCarriageReturn(line), lineNumber };
      }

      // Checked here too, so that a file without line breaks is not read whole into memory.
      rejectLongLine(pending, lineNumber + 1, maxLineChars, path);
    }

    pending += decode(undefined, lineNumber + 1);
  } catch (error) {
    throw toDelimitedFileError(error, path);
  }

  if (pending !== '') {
    yield { line: removeCarriageReturn(pending), lineNumber: lineNumber + 1 };
  }
}

function rejectLongLine(line: string, lineNumber: number, maxLineChars: number, path: string) {
  if (line.length <= maxLineChars) {
    return;
  }

  throw new DelimitedFileError(
    `reading ${path} failed: line ${lineNumber} is longer than ${maxLineChars} characters; ` +
      'check the separator, the line endings and the encoding of the file',
    path,
    lineNumber,
  );
}

/** Removes the CR of a CRLF line ending. */
function removeCarriageReturn(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/**
 * Returns a function that decodes the next chunk, or flushes the decoder when called without
 * one. The UTF-8 decoder keeps a character split across two chunks for the next call.
 */
function createDecoder(
  options: DelimitedFileOptions,
): (chunk: Buffer | undefined, lineNumber: number) => string {
  const { path } = options;

  if (options.encoding === 'latin1') {
    let isFirstChunk = true;

    return (chunk) => {
      if (isFirstChunk && chunk !== undefined && chunk.subarray(0, 3).equals(UTF8_BOM)) {
        throw new DelimitedFileError(
          `reading ${path} failed: the file starts with a UTF-8 byte order mark, so it is ` +
            'UTF-8 text; read it as utf8 or convert it to ISO-8859-1',
          path,
          1,
        );
      }

      isFirstChunk = false;

      return chunk?.toString('latin1') ?? '';
    };
  }

  // `fatal` rejects malformed UTF-8, which would otherwise become U+FFFD without notice.
  const decoder = new TextDecoder('utf-8', { fatal: true });

  return (chunk, lineNumber) => {
    try {
      return chunk === undefined ? decoder.decode() : decoder.decode(chunk, { stream: true });
    } catch (error) {
      throw new DelimitedFileError(
        `reading ${path} failed: invalid UTF-8 at or after line ${lineNumber}; ` +
          'convert the file to UTF-8 or read it with the encoding it was written in',
        path,
        lineNumber,
        { cause: error },
      );
    }
  };
}

function toDelimitedFileError(error: unknown, path: string): Error {
  if (error instanceof DelimitedFileError || (error as Error).name === 'AbortError') {
    return error as Error;
  }

  const message = `reading ${path} failed: ${(error as Error).message}`;

  return new DelimitedFileError(message, path, undefined, { cause: error });
}

import type { RssSample } from './measure.ts';

/** Timeline rows: one per second. */
const TIMELINE_STEP_MS = 1000;

/** Formats rows as a Markdown table with aligned columns, numbers right-aligned. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const isNumeric = headers.map((_, column) =>
    rows.every((row) => /^[-+]?[\d.,]+(?: ?[a-zA-Z%×/]+)?$|^n\/a$/.test(row[column] ?? '')),
  );
  const formatRow = (cells: string[]) =>
    `| ${cells
      .map((cell, column) => {
        const width = widths[column] ?? 0;

        return isNumeric[column] ? cell.padStart(width) : cell.padEnd(width);
      })
      .join(' | ')} |`;
  const rule = `| ${widths
    .map((width, column) => (isNumeric[column] ? `${'-'.repeat(width - 1)}:` : '-'.repeat(width)))
    .join(' | ')} |`;

  return [formatRow(headers), rule, ...rows.map(formatRow)].join('\n');
}

/** Formats a count with thousands separators: 1,000,000. */
export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

/** Formats bytes as MiB with one decimal. */
export function formatMiB(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)}`;
}

/** Formats milliseconds as seconds with two decimals. */
export function formatSeconds(milliseconds: number | undefined): string {
  return milliseconds === undefined ? 'n/a' : (milliseconds / 1000).toFixed(2);
}

/** Formats a ratio such as 0.73 or 12.4 with a trailing ×. */
export function formatRatio(value: number): string {
  return `${value >= 10 ? value.toFixed(1) : value.toFixed(2)}×`;
}

/** Formats memory once a second: the sample with the highest RSS in each second. */
export function formatTimeline(samples: RssSample[]): string {
  const rows: string[][] = [];
  const lastMs = samples.at(-1)?.atMs ?? 0;

  for (let fromMs = 0; fromMs <= lastMs; fromMs += TIMELINE_STEP_MS) {
    const inStep = samples.filter(
      (sample) => sample.atMs >= fromMs && sample.atMs < fromMs + TIMELINE_STEP_MS,
    );
    const highest = inStep.reduce<RssSample | undefined>(
      (found, sample) => (found === undefined || sample.rssBytes > found.rssBytes ? sample : found),
      undefined,
    );

    if (highest !== undefined) {
      rows.push([
        formatSeconds(fromMs),
        formatMiB(highest.rssBytes),
        formatMiB(highest.heapTotalBytes),
        formatMiB(highest.externalBytes),
      ]);
    }
  }

  return formatTable(['second', 'RSS MiB', 'V8 heap MiB', 'external MiB'], rows);
}

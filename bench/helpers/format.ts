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

/** Parses a whole number of at least `minimum`, naming the option when it is invalid. */
export function parseCount(option: string, text: string | undefined, minimum: number): number {
  const value = Number(text);

  if (!Number.isInteger(value) || value < minimum) {
    throw new Error(`invalid ${option} "${text}": use a whole number of at least ${minimum}`);
  }

  return value;
}

/** Parses `NAME=VALUE,NAME=VALUE` into settings. */
export function parseVariant(text: string): Record<string, string> {
  const settings: Record<string, string> = {};

  for (const assignment of text.split(',')) {
    const match = /^\s*([A-Z][A-Z0-9_]*)=(.*?)\s*$/.exec(assignment);

    if (!match) {
      throw new Error(`invalid --variant "${text}": use NAME=VALUE pairs separated by commas`);
    }

    settings[match[1] as string] = match[2] as string;
  }

  return settings;
}

/** Names a run by its kind and the settings of its variant, if any. */
export function formatVariant(kind: string, settings: Record<string, string> = {}): string {
  const assignments = Object.entries(settings).map(([name, value]) => `${name}=${value}`);

  return assignments.length === 0 ? kind : `${kind} ${assignments.join(',')}`;
}

/** Returns the middle value, or the mean of the two middle values. */
export function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  const middle = Math.floor(sorted.length / 2);

  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

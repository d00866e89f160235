import { readdirSync, readFileSync } from 'node:fs';

/** How often the sampler reads the resident set size. */
export const RSS_SAMPLE_INTERVAL_MS = 100;

/** One memory reading, taken `atMs` after the sampler started. */
export type RssSample = {
  atMs: number;
  rssBytes: number;
  /** V8 heap reserved, part of the RSS. */
  heapTotalBytes: number;
  /** Memory of Buffers and other objects outside the V8 heap. */
  externalBytes: number;
};

/** Cost of one measured run to the process that ran it. */
export type Measurement = {
  durationMs: number;
  /** User plus system CPU time of this process during the run. */
  cpuMs: number;
  /** Highest RSS sampled during the run. */
  peakRssBytes: number;
  /** Highest RSS of the process over its whole life, as the kernel reports it. */
  maxRssBytes: number;
  samples: RssSample[];
};

/**
 * Runs `work` and measures its wall time, this process's CPU time and its resident set size,
 * sampled every RSS_SAMPLE_INTERVAL_MS. `onSample` receives each sample as it is taken.
 */
export async function measure<T>(
  work: () => Promise<T>,
  onSample?: (sample: RssSample) => void,
): Promise<{ result: T; measurement: Measurement }> {
  const samples: RssSample[] = [];
  const startedAt = performance.now();
  const startCpu = process.cpuUsage();
  const takeSample = () => {
    const usage = process.memoryUsage();
    const sample = {
      atMs: Math.round(performance.now() - startedAt),
      rssBytes: usage.rss,
      heapTotalBytes: usage.heapTotal,
      externalBytes: usage.external,
    };

    samples.push(sample);
    onSample?.(sample);
  };

  takeSample();

  const timer = setInterval(takeSample, RSS_SAMPLE_INTERVAL_MS);
  let result: T;

  try {
    result = await work();
  } finally {
    clearInterval(timer);
  }

  takeSample();

  const cpu = process.cpuUsage(startCpu);

  return {
    result,
    measurement: {
      durationMs: performance.now() - startedAt,
      cpuMs: (cpu.user + cpu.system) / 1000,
      peakRssBytes: Math.max(...samples.map((sample) => sample.rssBytes)),
      // resourceUsage reports maxRSS in kibibytes.
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      samples,
    },
  };
}

/** Clock ticks per second of /proc/<pid>/stat times; 100 on Linux for every common arch. */
const CLOCK_TICKS_PER_SECOND = 100;

type ProcStat = { pid: number; parentPid: number; ownTicks: number; reapedChildTicks: number };

function readProcStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces; fields follow the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const field = (number: number) => Number(fields[number - 3]);

    return {
      pid,
      parentPid: field(4),
      ownTicks: field(14) + field(15),
      reapedChildTicks: field(16) + field(17),
    };
  } catch {
    return undefined;
  }
}

/**
 * Returns the CPU time in milliseconds used so far by a process and all its descendants,
 * the exited ones it has reaped included, read from /proc. Returns undefined where /proc is
 * missing (any system but Linux).
 */
export function readProcessTreeCpuMs(rootPid: number): number | undefined {
  const root = readProcStat(rootPid);

  if (root === undefined) {
    return undefined;
  }

  const stats = readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readProcStat(Number(name)))
    .filter((stat): stat is ProcStat => stat !== undefined);
  const childrenByParent = new Map<number, ProcStat[]>();

  for (const stat of stats) {
    childrenByParent.set(stat.parentPid, [...(childrenByParent.get(stat.parentPid) ?? []), stat]);
  }

  let ticks = root.ownTicks + root.reapedChildTicks;
  const pending = [...(childrenByParent.get(rootPid) ?? [])];

  // The tree of a PostgreSQL server is two levels deep. The bound only guards against a cycle
  // from a pid reused while /proc was being read.
  for (let visited = 0; pending.length > 0 && visited < stats.length; visited += 1) {
    const stat = pending.pop() as ProcStat;

    ticks += stat.ownTicks + stat.reapedChildTicks;
    pending.push(...(childrenByParent.get(stat.pid) ?? []));
  }

  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * Runs one benchmark: `npm run bench -- <name> [options]` loads bench/<name>.ts and calls its
 * `main` with the remaining arguments. A benchmark without `main` reads them from
 * process.argv when it is loaded, as if it had been started directly. Each benchmark
 * documents its options at its top.
 */
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** A benchmark module; one without `main` does its work when it is imported. */
type Benchmark = { main?: (args: string[]) => Promise<void> };

const benchFolder = new URL('./', import.meta.url);

function listBenchmarks(): string[] {
  return readdirSync(benchFolder)
    .filter((name) => name.endsWith('.ts') && name !== 'run.ts')
    .map((name) => name.slice(0, -'.ts'.length))
    .sort();
}

const [name, ...args] = process.argv.slice(2);
const scriptUrl = new URL(`./${name ?? ''}.ts`, benchFolder);

if (
  name === undefined ||
  !/^[a-z][a-z0-9-]*$/.test(name) ||
  name === 'run' ||
  !existsSync(scriptUrl)
) {
  process.stderr.write(
    `usage: npm run bench -- <name> [options]; name is one of: ${listBenchmarks().join(', ')}\n`,
  );
  process.exitCode = 2;
} else {
  // process.argv as `node bench/<name>.ts [options]` would have it.
  process.argv.splice(1, 2, fileURLToPath(scriptUrl));

  const benchmark = (await import(scriptUrl.href)) as Benchmark;

  try {
    await benchmark.main?.(args);
  } catch (error) {
    process.stderr.write(
      `bench ${name}: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
  }
}

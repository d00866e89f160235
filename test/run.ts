/**
 * Runs the whole suite with node:test. When no PostgreSQL server is configured (neither
 * POSTGRES_HOST nor DATABASE_URL), it starts one embedded server for every test file to share.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/local/embedded-postgres.ts';

const testFiles = readdirSync(new URL('.', import.meta.url), { recursive: true })
  .map(String)
  .filter((file) => file.endsWith('.test.ts'))
  .sort()
  .map((file) => `test/${file}`);

const requestedFiles = process.argv.slice(2);
let server: EmbeddedServer | undefined;
const env = { ...process.env };

if (!env.POSTGRES_HOST && !env.DATABASE_URL) {
  server = await startEmbeddedPostgres();
  Object.assign(env, {
    POSTGRES_HOST: server.host,
    POSTGRES_PORT: String(server.port),
    POSTGRES_USER: server.user,
    POSTGRES_PASSWORD: server.password,
    DB_NAME: server.database,
  });
  process.stderr.write(`test: embedded PostgreSQL on 127.0.0.1:${server.port}\n`);
}

const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', ...(requestedFiles.length > 0 ? requestedFiles : testFiles)],
  { env, stdio: 'inherit' },
);

const exitCode = await new Promise<number>((resolve) => {
  child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
});

await server?.stop();
process.exit(exitCode);

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  CreateQueueCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { createSqsClient } from '../src/aws.ts';
import { BUNDLED_SCHEMA_PATH, ConfigError, loadConfig, type Config } from '../src/config.ts';
import { startEmulator, type Emulator } from '../src/local/emulator.ts';
import { createLogger } from '../src/logger.ts';
import { produce } from '../src/pipelines/produce.ts';
import { createComplaintCsvSource, type ComplaintRecord } from '../src/sources/complaint-csv.ts';

const TEST_TIMEOUT_MS = 60_000;

/** ReceiveMessage calls that may come back empty in a row before the queue counts as drained. */
const MAX_EMPTY_RECEIVES = 3;

const logger = createLogger('silent');
const samplesDir = fileURLToPath(new URL('../samples/reclamacoes/', import.meta.url));
const realDataDir = fileURLToPath(new URL('../../shared/data/reclamacoes/', import.meta.url));
const skipWithoutRealData = existsSync(realDataDir)
  ? false
  : `real data not found at ${realDataDir}`;

let emulator: Emulator;
let recordType: RecordType;

before(async () => {
  emulator = await startEmulator();
  recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
});

after(async () => {
  await emulator.stop();
});

/** Creates a queue with a unique name and returns a configuration for it with dummy keys. */
async function createQueueConfig(): Promise<{ config: Config; sqs: SQSClient }> {
  const env = {
    AWS_ENDPOINT_URL: emulator.endpointUrl,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_DEFAULT_REGION: 'us-east-1',
    SQS_SEND_CONCURRENCY: '4',
  };
  const sqs = createSqsClient(loadConfig(env, ''));
  const queueName = `produce-test-${randomBytes(4).toString('hex')}`;
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: queueName }));

  assert.ok(QueueUrl);

  return { config: loadConfig({ ...env, SQS_QUEUE_URL: QueueUrl }, ''), sqs };
}

/** Receives until the queue stays empty, in at most a number of calls set by the expected count. */
async function receiveAll(sqs: SQSClient, queueUrl: string, expectedCount: number) {
  const messages: Message[] = [];
  const maxCalls = Math.ceil(expectedCount / 10) + 10;
  let emptyCount = 0;

  for (let call = 0; call < maxCalls && emptyCount < MAX_EMPTY_RECEIVES; call += 1) {
    const response = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
      }),
    );
    const received = response.Messages ?? [];

    emptyCount = received.length === 0 ? emptyCount + 1 : 0;
    messages.push(...received);
  }

  return messages;
}

function decodeBody(message: Message): ComplaintRecord {
  return { ...(recordType.fromBuffer(Buffer.from(message.Body ?? '', 'base64')) as object) };
}

async function readRecords(files: string[]): Promise<ComplaintRecord[]> {
  const records: ComplaintRecord[] = [];

  for (const file of files) {
    records.push(...(await createComplaintCsvSource(file, { recordType, logger }).toArray()));
  }

  return records;
}

/** Records as sorted JSON lines, so two lists compare equal whatever their order. */
function toSortedLines(records: unknown[]): string[] {
  return records.map((record) => JSON.stringify(record)).sort();
}

async function listCsvFiles(folder: string): Promise<string[]> {
  const names = await readdir(folder);

  return names
    .filter((name) => name.endsWith('.csv'))
    .sort()
    .map((name) => join(folder, name));
}

describe('produce against the emulator', { timeout: TEST_TIMEOUT_MS }, () => {
  test('sample folder sent in name order', async () => {
    const { config, sqs } = await createQueueConfig();

    const results = await produce([samplesDir], { config, logger, sqs });

    assert.deepEqual(
      results.map((result) => [basename(result.file), result.messageCount]),
      [
        ['2023_tri_01.csv', 26],
        ['2023_tri_02.csv', 27],
        ['2023_tri_03_nao_ha_dados.csv', 0],
      ],
    );
    sqs.destroy();
  });

  test('received sample bodies decode to the CSV records', async () => {
    const { config, sqs } = await createQueueConfig();
    const files = await listCsvFiles(samplesDir);
    const expected = await readRecords(files);

    await produce(files, { config, logger, sqs });
    const messages = await receiveAll(sqs, config.sqs.queueUrl, expected.length);

    assert.equal(messages.length, 53);
    assert.deepEqual(toSortedLines(messages.map(decodeBody)), toSortedLines(expected));
    sqs.destroy();
  });

  test('published files all arrive and decode', { skip: skipWithoutRealData }, async () => {
    const { config, sqs } = await createQueueConfig();
    const files = await listCsvFiles(realDataDir);
    const expected = await readRecords(files);

    const results = await produce([realDataDir], { config, logger, sqs });
    const messages = await receiveAll(sqs, config.sqs.queueUrl, expected.length);

    assert.equal(results.length, files.length);
    assert.equal(
      results.reduce((sum, result) => sum + result.messageCount, 0),
      expected.length,
    );
    assert.equal(messages.length, expected.length);
    assert.deepEqual(toSortedLines(messages.map(decodeBody)), toSortedLines(expected));
    sqs.destroy();
  });

  test('missing path fails before any message is sent', async () => {
    const { config, sqs } = await createQueueConfig();
    const absent = join(samplesDir, 'absent.csv');

    await assert.rejects(produce([samplesDir, absent], { config, logger, sqs }), {
      message: `file not found: ${absent}; check the path`,
    });
    const messages = await receiveAll(sqs, config.sqs.queueUrl, 0);

    assert.equal(messages.length, 0);
    sqs.destroy();
  });

  test('failure names the files already sent', async () => {
    const { config, sqs } = await createQueueConfig();
    const folder = await mkdtemp(join(tmpdir(), 'produce-test-'));
    const [firstSample] = await listCsvFiles(samplesDir);
    const good = join(folder, 'a.csv');
    const wrongHeader = join(folder, 'b.csv');

    await copyFile(firstSample as string, good);
    await writeFile(wrongHeader, 'Ano;Trimestre\n');

    try {
      await assert.rejects(
        produce([folder], { config, logger, sqs }),
        /no column for required field .*; already sent before the failure: .*a\.csv \(\d+ messages\)$/,
      );
    } finally {
      await rm(folder, { recursive: true, force: true });
      sqs.destroy();
    }
  });

  test('unset queue URL fails with a configuration error', async () => {
    const { config, sqs } = await createQueueConfig();
    const unset = { ...config, sqs: { ...config.sqs, queueUrl: '' } };

    await assert.rejects(produce([samplesDir], { config: unset, logger, sqs }), ConfigError);
    sqs.destroy();
  });

  test('aborted signal stops before the first file', async () => {
    const { config, sqs } = await createQueueConfig();
    const controller = new AbortController();

    controller.abort();

    const produced = produce([samplesDir], { config, logger, sqs, signal: controller.signal });

    await assert.rejects(produced, { name: 'AbortError' });
    sqs.destroy();
  });
});

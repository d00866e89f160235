import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import type {
  BatchResultErrorEntry,
  SendMessageBatchCommand,
  SendMessageBatchResult,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { createLogger } from '../src/logger.ts';
import {
  createSqsSendSink,
  SEND_MAX_ATTEMPTS,
  SQS_MAX_BATCH_BYTES,
  SqsSendError,
  type SqsBatchEntry,
} from '../src/sinks/sqs-send.ts';

const QUEUE_URL = 'http://127.0.0.1:1/000000000000/sqs-send-test';
const logger = createLogger('silent');

type SentBatch = SqsBatchEntry[];

type FailurePicker = (entry: SqsBatchEntry, call: number) => BatchResultErrorEntry | undefined;

/**
 * A stand-in for SQSClient that records each SendMessageBatch call and responds like SQS. The
 * `fail` callback picks, per call, the entries to report in `Failed` of a 200 response.
 */
class FakeSqs {
  readonly batches: SentBatch[] = [];
  inFlightCount = 0;
  maxInFlightCount = 0;

  constructor(
    private readonly fail: FailurePicker = () => undefined,
    private readonly delayMs = 0,
  ) {}

  async send(command: SendMessageBatchCommand): Promise<SendMessageBatchResult> {
    const entries = command.input.Entries as SentBatch;
    const call = this.batches.length + 1;

    this.batches.push(entries);
    this.inFlightCount += 1;
    this.maxInFlightCount = Math.max(this.maxInFlightCount, this.inFlightCount);

    await new Promise((resolve) => setTimeout(resolve, this.delayMs));

    this.inFlightCount -= 1;

    const failed = entries.flatMap((entry) => this.fail(entry, call) ?? []);
    const failedIds = new Set(failed.map((result) => result.Id));
    const successful = entries
      .filter((entry) => !failedIds.has(entry.Id))
      .map((entry) => ({ Id: entry.Id, MessageId: `m-${entry.Id}`, MD5OfMessageBody: '' }));

    return { Successful: successful, Failed: failed };
  }

  asClient(): SQSClient {
    return this as unknown as SQSClient;
  }
}

function makeEntries(count: number, bodyBytes = 16): SqsBatchEntry[] {
  return Array.from({ length: count }, (_, index) => ({
    Id: String(index + 1),
    MessageBody: 'A'.repeat(bodyBytes),
  }));
}

function serverFault(code: string) {
  return (entry: SqsBatchEntry): BatchResultErrorEntry => ({
    Id: entry.Id,
    SenderFault: false,
    Code: code,
  });
}

function createSink(fake: FakeSqs, concurrency: number) {
  return createSqsSendSink({
    sqs: fake.asClient(),
    queueUrl: QUEUE_URL,
    concurrency,
    logger,
    retryBaseDelayMs: 1,
  });
}

async function sendAll(fake: FakeSqs, entries: SqsBatchEntry[], concurrency = 2) {
  const sink = createSink(fake, concurrency);

  await pipeline(Readable.from(entries), sink);

  return sink;
}

describe('SQS send sink batching', () => {
  test('groups 25 entries into batches of 10, 10 and 5', async () => {
    const fake = new FakeSqs();

    const sink = await sendAll(fake, makeEntries(25));

    assert.deepEqual(
      fake.batches.map((batch) => batch.length),
      [10, 10, 5],
    );
    assert.equal(sink.messageCount, 25);
  });

  test('starts a new batch before the byte limit', async () => {
    const fake = new FakeSqs();
    const bodyBytes = Math.floor(SQS_MAX_BATCH_BYTES / 2.5);

    await sendAll(fake, makeEntries(5, bodyBytes));

    assert.deepEqual(
      fake.batches.map((batch) => batch.length),
      [2, 2, 1],
    );
  });

  test('a batch of exactly the byte limit is one call', async () => {
    const fake = new FakeSqs();

    await sendAll(fake, makeEntries(2, SQS_MAX_BATCH_BYTES / 2));

    assert.deepEqual(
      fake.batches.map((batch) => batch.length),
      [2],
    );
  });

  test('entry above the byte limit fails with its id', async () => {
    const fake = new FakeSqs();
    const entries = [{ Id: 'big', MessageBody: 'A'.repeat(SQS_MAX_BATCH_BYTES + 1) }];

    await assert.rejects(sendAll(fake, entries), (error: unknown) => {
      assert.ok(error instanceof SqsSendError);
      assert.deepEqual(error.entryIds, ['big']);
      assert.equal(error.queueUrl, QUEUE_URL);

      return true;
    });
    assert.equal(fake.batches.length, 0);
  });

  test('keeps at most concurrency calls in flight', async () => {
    const fake = new FakeSqs(undefined, 5);

    await sendAll(fake, makeEntries(200), 3);

    assert.equal(fake.batches.length, 20);
    assert.equal(fake.maxInFlightCount, 3);
  });

  test('empty input sends nothing', async () => {
    const fake = new FakeSqs();

    const sink = await sendAll(fake, []);

    assert.equal(fake.batches.length, 0);
    assert.equal(sink.messageCount, 0);
  });
});

describe('SQS send sink failures', () => {
  test('retries service-side entry failures', async () => {
    const fake = new FakeSqs((entry, call) =>
      call <= 2 && entry.Id === '3' ? serverFault('InternalError')(entry) : undefined,
    );

    const sink = await sendAll(fake, makeEntries(4));

    assert.deepEqual(
      fake.batches.map((batch) => batch.map((entry) => entry.Id)),
      [['1', '2', '3', '4'], ['3'], ['3']],
    );
    assert.equal(sink.messageCount, 4);
  });

  test('gives up after maximum attempts', async () => {
    const fake = new FakeSqs((entry) =>
      entry.Id === '2' ? serverFault('ServiceUnavailable')(entry) : undefined,
    );

    await assert.rejects(sendAll(fake, makeEntries(3)), (error: unknown) => {
      assert.ok(error instanceof SqsSendError);
      assert.deepEqual(error.entryIds, ['2']);
      assert.match(error.message, new RegExp(`after ${SEND_MAX_ATTEMPTS} attempts`));

      return true;
    });
    assert.equal(fake.batches.length, SEND_MAX_ATTEMPTS);
  });

  test('sender fault fails without retry', async () => {
    const fake = new FakeSqs((entry) =>
      entry.Id === '1' || entry.Id === '3'
        ? { Id: entry.Id, SenderFault: true, Code: 'InvalidMessageContents', Message: 'bad' }
        : undefined,
    );

    await assert.rejects(sendAll(fake, makeEntries(4)), (error: unknown) => {
      assert.ok(error instanceof SqsSendError);
      assert.deepEqual(error.entryIds, ['1', '3']);
      assert.equal(error.errorCode, 'InvalidMessageContents');
      assert.match(error.message, /sender's fault \(InvalidMessageContents: bad\)/);

      return true;
    });
    assert.equal(fake.batches.length, 1);
  });

  test('failed call reports every batch id', async () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED'), { name: 'ECONNREFUSED' });
    const client = {
      send: async () => {
        throw cause;
      },
    } as unknown as SQSClient;
    const sink = createSqsSendSink({ sqs: client, queueUrl: QUEUE_URL, concurrency: 1, logger });

    await assert.rejects(pipeline(Readable.from(makeEntries(3)), sink), (error: unknown) => {
      assert.ok(error instanceof SqsSendError);
      assert.deepEqual(error.entryIds, ['1', '2', '3']);
      assert.equal(error.errorCode, 'ECONNREFUSED');
      assert.equal(error.cause, cause);
      assert.match(error.message, /^sending messages to http:\/\/127\.0\.0\.1:1\//);

      return true;
    });
  });

  test('concurrency below 1 is rejected', () => {
    const fake = new FakeSqs();

    assert.throws(() => createSink(fake, 0), RangeError);
  });
});

describe('SQS send sink stream contract', () => {
  test('finish fires once after every batch is sent', async () => {
    const fake = new FakeSqs(undefined, 2);
    const sink = createSink(fake, 2);
    let finishCount = 0;

    sink.on('finish', () => {
      finishCount += 1;
      assert.equal(fake.inFlightCount, 0);
    });

    await pipeline(Readable.from(makeEntries(35)), sink);

    assert.equal(finishCount, 1);
    assert.equal(sink.messageCount, 35);
  });

  test('error fires once when two batches fail', async () => {
    const fake = new FakeSqs(
      (entry) => ({ Id: entry.Id, SenderFault: true, Code: 'InvalidParameterValue' }),
      2,
    );
    const sink = createSink(fake, 2);
    let errorCount = 0;

    sink.on('error', () => {
      errorCount += 1;
    });

    await assert.rejects(pipeline(Readable.from(makeEntries(20)), sink), SqsSendError);
    assert.equal(errorCount, 1);
  });

  test('destroy before the first write sends nothing', async () => {
    const fake = new FakeSqs();
    const sink = createSink(fake, 1);

    sink.destroy();

    await assert.rejects(finished(sink), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    assert.equal(fake.batches.length, 0);
  });

  test('destroy waits for in-flight send', async () => {
    const fake = new FakeSqs(undefined, 20);
    const sink = createSink(fake, 1);

    for (const entry of makeEntries(11)) {
      sink.write(entry);
    }

    await new Promise((resolve) => setImmediate(resolve));
    sink.destroy();
    await new Promise((resolve) => sink.once('close', resolve));

    assert.equal(fake.batches.length, 1);
    assert.equal(fake.inFlightCount, 0);
  });
});

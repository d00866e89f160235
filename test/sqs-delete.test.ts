import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, beforeEach, describe, test } from 'node:test';
import { CreateQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { loadConfig } from '../src/config.ts';
import { createSqsDeleteSink, type SqsDeleteSink } from '../src/sinks/sqs-delete.ts';
import type { StoredBatch } from '../src/sinks/postgres-copy.ts';
import type { ReceivedMessage } from '../src/sources/sqs.ts';
import { VisibilityKeeper } from '../src/sources/sqs-visibility.ts';
import {
  failDeleteEntries,
  failFirstAttempts,
  injectHttpFaults,
  SQS_INTERNAL_ERROR,
} from './helpers/aws-faults.ts';
import { countQueueMessages, sendBodies, startTestAws, type TestAws } from './helpers/aws.ts';
import { captureLogs, type CapturedLogs } from './helpers/logs.ts';

const TEST_TIMEOUT_MS = 30_000;

describe('SqsDeleteSink', { timeout: TEST_TIMEOUT_MS }, () => {
  let aws: TestAws;
  let queueUrl: string;

  before(async () => {
    aws = await startTestAws(loadConfig({}, ''));
  });

  after(async () => {
    await aws.stop();
  });

  // A queue per test, so that messages one test leaves behind stay out of the next.
  beforeEach(async () => {
    const { QueueUrl } = await aws.sqs.send(
      new CreateQueueCommand({ QueueName: `delete-test-${randomUUID()}` }),
    );

    queueUrl = QueueUrl ?? '';
  });

  async function receiveAll(count: number): Promise<ReceivedMessage[]> {
    const received: ReceivedMessage[] = [];

    for (let round = 0; round < 20 && received.length < count; round += 1) {
      const { Messages = [] } = await aws.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          VisibilityTimeout: 30,
        }),
      );

      for (const message of Messages) {
        received.push({
          messageId: message.MessageId ?? '',
          receiptHandle: message.ReceiptHandle ?? '',
          body: message.Body ?? '',
          md5OfBody: message.MD5OfBody ?? '',
          receiveCount: 1,
          sentAtMs: null,
        });
      }
    }

    return received;
  }

  async function receiveFresh(count: number): Promise<ReceivedMessage[]> {
    await sendBodies(aws.sqs, queueUrl, Array.from({ length: count }, (_, index) => `body ${index}`));

    const received = await receiveAll(count);

    assert.equal(received.length, count);

    return received;
  }

  function storedBatch(messages: ReceivedMessage[]): StoredBatch {
    return { messages, storedCount: messages.length, duplicateCount: 0, deadLetterCount: 0 };
  }

  function createSink(logs: CapturedLogs, maxAttempts = 4): SqsDeleteSink {
    const visibility = new VisibilityKeeper({
      sqs: aws.sqs,
      queueUrl,
      visibilityTimeoutSeconds: 30,
      logger: logs.logger,
    });

    return createSqsDeleteSink({ sqs: aws.sqs, queueUrl, visibility, logger: logs.logger, maxAttempts });
  }

  test('deletes every message of a stored batch', async () => {
    const messages = await receiveFresh(25);
    const logs = captureLogs();
    const sink = createSink(logs);

    await pipeline(Readable.from([storedBatch(messages)]), sink);

    assert.equal(sink.counts.deletedCount, 25);
    assert.equal(sink.counts.undeletedCount, 0);
    assert.equal(await countQueueMessages(aws.sqs, queueUrl), 0);
  });

  test('retries entries reported failed in a 200 response', async () => {
    const messages = await receiveFresh(12);
    const flaky = new Set([messages[0]?.receiptHandle, messages[11]?.receiptHandle]);
    const restore = failDeleteEntries(aws.sqs, (handle, attempt) => flaky.has(handle) && attempt <= 2);
    const logs = captureLogs();
    const sink = createSink(logs);

    try {
      await pipeline(Readable.from([storedBatch(messages)]), sink);
    } finally {
      restore();
    }

    assert.equal(sink.counts.deletedCount, 12);
    assert.equal(sink.counts.undeletedCount, 0);
    assert.equal(logs.lines.filter((line) => line.level >= 40).length, 0);
    assert.equal(await countQueueMessages(aws.sqs, queueUrl), 0);
  });

  test('logs entries that still fail by message id', async () => {
    const messages = await receiveFresh(15);
    const stuck = [messages[3], messages[12]].map((message) => message?.receiptHandle);
    const restore = failDeleteEntries(aws.sqs, (handle) => stuck.includes(handle));
    const logs = captureLogs();
    const sink = createSink(logs, 3);

    try {
      await pipeline(Readable.from([storedBatch(messages)]), sink);
    } finally {
      restore();
    }

    const warnings = logs.withMessage(
      'messages stored but not deleted; they will be redelivered and skipped as duplicates',
    );
    const loggedIds = warnings.flatMap((line) => line.messageIds as string[]).sort();

    assert.equal(sink.counts.deletedCount, 13);
    assert.equal(sink.counts.undeletedCount, 2);
    assert.deepEqual(loggedIds, [messages[3]?.messageId, messages[12]?.messageId].sort());
    assert.equal(warnings[0]?.errorCode, 'InternalError');
    assert.equal(warnings[0]?.receiptHandle, undefined);
    assert.equal(await countQueueMessages(aws.sqs, queueUrl), 2);
  });

  test('survives 5xx answers that the SDK retries', async () => {
    const messages = await receiveFresh(10);
    const faults = failFirstAttempts('DeleteMessageBatchCommand', 2, SQS_INTERNAL_ERROR);
    const remove = injectHttpFaults(aws.sqs, faults.pickFault);
    const logs = captureLogs();
    const sink = createSink(logs);

    try {
      await pipeline(Readable.from([storedBatch(messages)]), sink);
    } finally {
      remove();
    }

    assert.equal(faults.attempts(), 3);
    assert.equal(sink.counts.deletedCount, 10);
    assert.equal(logs.lines.filter((line) => line.level >= 40).length, 0);
    assert.equal(await countQueueMessages(aws.sqs, queueUrl), 0);
  });

  test('retries a chunk whose call fails after the SDK gave up', async () => {
    const messages = await receiveFresh(10);
    // Five attempts per call: the first call fails entirely, the second one succeeds.
    const faults = failFirstAttempts('DeleteMessageBatchCommand', 5, SQS_INTERNAL_ERROR);
    const remove = injectHttpFaults(aws.sqs, faults.pickFault);
    const logs = captureLogs();
    const sink = createSink(logs);

    try {
      await pipeline(Readable.from([storedBatch(messages)]), sink);
    } finally {
      remove();
    }

    const retries = logs.withMessage('delete failed, retrying');

    assert.equal(retries.length, 1);
    assert.equal(retries[0]?.messageCount, 10);
    assert.equal(sink.counts.deletedCount, 10);
    assert.equal(await countQueueMessages(aws.sqs, queueUrl), 0);
  });
});

import { randomBytes } from 'node:crypto';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SendMessageBatchCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { createS3Client, createSqsClient } from '../../src/aws.ts';
import type { Config } from '../../src/config.ts';
import { startEmulator, type Emulator } from '../../src/local/emulator.ts';

/** An emulator with a queue and a bucket of unique names, and a configuration that uses them. */
export type TestAws = {
  emulator: Emulator;
  config: Config;
  sqs: SQSClient;
  stop(): Promise<void>;
};

/** Starts an emulator on 127.0.0.1 and points a copy of `config` at a new queue and bucket. */
export async function startTestAws(config: Config): Promise<TestAws> {
  const emulator = await startEmulator();
  const suffix = randomBytes(4).toString('hex');
  const awsConfig: Config = {
    ...config,
    aws: {
      ...config.aws,
      endpointUrl: emulator.endpointUrl,
      accessKeyId: 'test',
      secretAccessKey: 'test',
    },
  };
  const sqs = createSqsClient(awsConfig);
  const s3 = createS3Client(awsConfig);
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: `test-${suffix}` }));
  const bucket = `test-${suffix}`;

  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  s3.destroy();

  return {
    emulator,
    sqs,
    config: {
      ...awsConfig,
      sqs: { ...awsConfig.sqs, queueUrl: QueueUrl ?? '', waitTimeSeconds: 0 },
      s3: { ...awsConfig.s3, bucket },
    },
    async stop() {
      sqs.destroy();
      await emulator.stop();
    },
  };
}

/**
 * Sends raw bodies to the queue, ten per SendMessageBatch call, and returns the message ids in
 * body order.
 */
export async function sendBodies(sqs: SQSClient, queueUrl: string, bodies: string[]): Promise<string[]> {
  const messageIds: string[] = [];

  for (let start = 0; start < bodies.length; start += 10) {
    const entries = bodies.slice(start, start + 10).map((body, index) => ({
      Id: String(index),
      MessageBody: body,
    }));
    const response = await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));

    if ((response.Failed ?? []).length > 0) {
      throw new Error(`sending test messages failed: ${JSON.stringify(response.Failed)}`);
    }

    const idsByEntry = new Map((response.Successful ?? []).map((entry) => [entry.Id, entry.MessageId]));

    entries.forEach((entry) => messageIds.push(idsByEntry.get(entry.Id) ?? ''));
  }

  return messageIds;
}

/** Messages of a queue: visible ones, and received ones whose visibility has not run out. */
export type QueueDepth = { visible: number; inFlight: number };

/** Reads a queue's approximate visible and in-flight message counts. */
export async function readQueueDepth(sqs: SQSClient, queueUrl: string): Promise<QueueDepth> {
  const { Attributes = {} } = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );

  return {
    visible: Number(Attributes.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0),
  };
}

/** Returns the visible plus in-flight message count of a queue. */
export async function countQueueMessages(sqs: SQSClient, queueUrl: string): Promise<number> {
  const { visible, inFlight } = await readQueueDepth(sqs, queueUrl);

  return visible + inFlight;
}

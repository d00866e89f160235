import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import { createS3Client, createSqsClient } from '../aws.ts';
import type { Config } from '../config.ts';
import { startEmulator, type Emulator } from '../local/emulator.ts';
import type { Logger } from '../logger.ts';

/** Credentials the emulator accepts; any value works, but the SDK wants some. */
const EMULATOR_KEYS = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };

export type LocalAws = {
  emulator: Emulator;
  /** Configuration pointing at the emulator, its queue and its bucket. */
  config: Config;
  settings: Record<string, string>;
};

/** Starts the emulator on 127.0.0.1 and creates one queue and one bucket in it. */
export async function startLocalAws(
  config: Config,
  options: { port: number; queueName: string; bucketName: string },
): Promise<LocalAws> {
  const emulator = await startEmulator({ port: options.port });
  const localConfig: Config = {
    ...config,
    aws: {
      ...config.aws,
      endpointUrl: emulator.endpointUrl,
      accessKeyId: EMULATOR_KEYS.AWS_ACCESS_KEY_ID,
      secretAccessKey: EMULATOR_KEYS.AWS_SECRET_ACCESS_KEY,
    },
  };
  const sqs = createSqsClient(localConfig);
  const s3 = createS3Client(localConfig);

  try {
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: options.queueName }));

    await s3.send(new CreateBucketCommand({ Bucket: options.bucketName }));

    const queueUrl = QueueUrl ?? '';

    return {
      emulator,
      config: {
        ...localConfig,
        sqs: { ...localConfig.sqs, queueUrl },
        s3: { ...localConfig.s3, bucket: options.bucketName },
      },
      settings: {
        AWS_ENDPOINT_URL: emulator.endpointUrl,
        AWS_DEFAULT_REGION: config.aws.region,
        ...EMULATOR_KEYS,
        SQS_QUEUE_URL: queueUrl,
        S3_BUCKET_NAME: options.bucketName,
      },
    };
  } catch (error) {
    await emulator.stop();
    throw error;
  } finally {
    sqs.destroy();
    s3.destroy();
  }
}

/**
 * `emulator`: serves SQS and S3 on 127.0.0.1 until SIGINT or SIGTERM, and prints the settings
 * that point the other commands at it.
 */
export async function runEmulator(
  config: Config,
  logger: Logger,
  options: { port: number; queueName: string; bucketName: string },
): Promise<number> {
  const local = await startLocalAws(config, options);
  const lines = Object.entries(local.settings).map(([name, value]) => `${name}=${value}`);

  process.stdout.write(`${lines.join('\n')}\n`);
  logger.info({ endpoint: local.emulator.endpointUrl }, 'emulator started');

  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });

  await local.emulator.stop();
  logger.info({}, 'emulator stopped');

  return 0;
}

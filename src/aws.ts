import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Config } from './config.ts';

type ClientOptions = {
  region: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  maxAttempts: number;
};

/** SDK attempts per call, including the first; the SDK backs off between them with jitter. */
const AWS_MAX_ATTEMPTS = 5;

function clientOptions(config: Config): ClientOptions {
  const { aws } = config;
  const options: ClientOptions = { region: aws.region, maxAttempts: AWS_MAX_ATTEMPTS };

  if (aws.endpointUrl !== '') {
    options.endpoint = aws.endpointUrl;
  }

  // Without explicit keys the SDK default chain applies: profile, web identity, container or
  // instance role.
  if (aws.accessKeyId !== '' && aws.secretAccessKey !== '') {
    options.credentials = { accessKeyId: aws.accessKeyId, secretAccessKey: aws.secretAccessKey };
  }

  return options;
}

/** Creates the SQS client for the configured region, endpoint and credentials. */
export function createSqsClient(config: Config): SQSClient {
  return new SQSClient(clientOptions(config));
}

/** Creates the S3 client; a custom endpoint (an emulator or MinIO) gets path-style addressing. */
export function createS3Client(config: Config): S3Client {
  return new S3Client({ ...clientOptions(config), forcePathStyle: config.aws.endpointUrl !== '' });
}

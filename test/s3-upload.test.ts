import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  HeadObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createS3Client } from '../src/aws.ts';
import { loadConfig, S3_MIN_PART_SIZE_BYTES } from '../src/config.ts';
import { startEmulator, type Emulator } from '../src/local/emulator.ts';
import { ABORT_FAILED_MESSAGE, S3UploadError, uploadFile } from '../src/sinks/s3-upload.ts';
import {
  failFirstAttempts,
  injectHttpFaults,
  interceptSend,
  S3_ACCESS_DENIED,
  S3_SLOW_DOWN,
  type HttpFault,
} from './helpers/aws-faults.ts';
import { captureLogs, type CapturedLogs } from './helpers/logs.ts';

const TEST_TIMEOUT_MS = 30_000;

/** Three parts of the smallest size S3 takes, the last one shorter. */
const FILE_SIZE_BYTES = 2 * S3_MIN_PART_SIZE_BYTES + 1024;

/** S3 failing internally, as a 500 response. */
const S3_INTERNAL_ERROR: HttpFault = {
  statusCode: 500,
  body: '<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>',
  contentType: 'application/xml',
};

describe('uploadFile', { timeout: TEST_TIMEOUT_MS }, () => {
  let emulator: Emulator;
  let s3: S3Client;
  let workDir: string;
  let path: string;
  let bucket: string;
  let logs: CapturedLogs;
  let sentCommands: string[];
  let removeFaults: Array<() => void>;

  before(async () => {
    emulator = await startEmulator();
    workDir = await mkdtemp(join(tmpdir(), 's3-upload-test-'));
    path = join(workDir, 'delivery.parquet');
    await writeFile(path, randomBytes(FILE_SIZE_BYTES));
  });

  after(async () => {
    await rm(workDir, { recursive: true, force: true });
    await emulator.stop();
  });

  beforeEach(async () => {
    s3 = createS3Client(
      loadConfig(
        {
          AWS_ENDPOINT_URL: emulator.endpointUrl,
          AWS_ACCESS_KEY_ID: 'test',
          AWS_SECRET_ACCESS_KEY: 'test',
        },
        '',
      ),
    );
    bucket = `upload-test-${randomUUID()}`;
    logs = captureLogs();
    sentCommands = [];
    removeFaults = [];
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    interceptSend(s3, async (command, send, options) => {
      sentCommands.push(command.constructor.name);

      return send(command, options);
    });
  });

  afterEach(() => {
    for (const remove of removeFaults) {
      remove();
    }

    s3.destroy();
  });

  function upload(key: string, signal?: AbortSignal) {
    return uploadFile({
      s3,
      bucket,
      key,
      path,
      partSizeBytes: S3_MIN_PART_SIZE_BYTES,
      concurrency: 1,
      logger: logs.logger,
      signal,
    });
  }

  function inject(pickFault: (commandName: string) => HttpFault | undefined): void {
    removeFaults.push(injectHttpFaults(s3, pickFault));
  }

  async function objectExists(key: string): Promise<boolean> {
    return s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(
      () => true,
      () => false,
    );
  }

  /**
   * Returns whether the bucket has no multipart upload in progress. The emulator does not
   * implement ListMultipartUploads, but like S3 it refuses to delete a bucket that has one.
   */
  async function hasNoOpenUploads(): Promise<boolean> {
    return s3.send(new DeleteBucketCommand({ Bucket: bucket })).then(
      () => true,
      () => false,
    );
  }

  test('retries parts that get SlowDown', async () => {
    const faults = failFirstAttempts('UploadPartCommand', 2, S3_SLOW_DOWN);

    inject(faults.pickFault);

    const { sizeBytes } = await upload('slow.parquet');
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'slow.parquet' }));

    assert.equal(sizeBytes, FILE_SIZE_BYTES);
    assert.equal(head.ContentLength, FILE_SIZE_BYTES);
    assert.equal(faults.attempts(), 5, 'two failed attempts, then three parts');
  });

  test('aborts the upload when a part fails for good', async () => {
    inject((commandName) => (commandName === 'UploadPartCommand' ? S3_ACCESS_DENIED : undefined));

    await assert.rejects(upload('denied.parquet'), (error: Error) => {
      assert.ok(error instanceof S3UploadError);
      assert.equal(error.key, 'denied.parquet');
      assert.ok(error.uploadId);

      return true;
    });

    assert.ok(sentCommands.includes('CreateMultipartUploadCommand'));
    assert.ok(sentCommands.includes('AbortMultipartUploadCommand'));
    assert.equal(await objectExists('denied.parquet'), false);
    assert.equal(await hasNoOpenUploads(), true);
  });

  test('aborts the upload when completing it fails', async () => {
    inject((commandName) =>
      commandName === 'CompleteMultipartUploadCommand' ? S3_ACCESS_DENIED : undefined,
    );

    await assert.rejects(upload('incomplete.parquet'), S3UploadError);

    assert.ok(sentCommands.includes('AbortMultipartUploadCommand'));
    assert.equal(await objectExists('incomplete.parquet'), false);
    assert.equal(await hasNoOpenUploads(), true);
  });

  test('aborts again when the first abort fails', async () => {
    // Five 500s use up the SDK's five attempts of the first AbortMultipartUpload.
    const abortFaults = failFirstAttempts('AbortMultipartUploadCommand', 5, S3_INTERNAL_ERROR);

    inject((commandName) =>
      commandName === 'UploadPartCommand' ? S3_ACCESS_DENIED : abortFaults.pickFault(commandName),
    );

    await assert.rejects(upload('retried-abort.parquet'), S3UploadError);

    assert.ok(abortFaults.attempts() > 5);
    assert.equal(await hasNoOpenUploads(), true);
  });

  test('logs the upload id when the parts cannot be removed', async () => {
    inject((commandName) => {
      if (commandName === 'UploadPartCommand') {
        return S3_ACCESS_DENIED;
      }

      return commandName === 'AbortMultipartUploadCommand' ? S3_INTERNAL_ERROR : undefined;
    });

    const error = await upload('orphan.parquet').then(
      () => assert.fail('the upload succeeded'),
      (rejection: unknown) => rejection as S3UploadError,
    );
    const orphaned = logs.withMessage(ABORT_FAILED_MESSAGE);

    assert.ok(error instanceof S3UploadError);
    assert.equal(orphaned.length, 1);
    assert.equal(orphaned[0]?.uploadId, error.uploadId);
    assert.equal(orphaned[0]?.key, 'orphan.parquet');
    assert.equal(orphaned[0]?.level, 50);
  });

  test('aborts the upload when the signal aborts', async () => {
    const abort = new AbortController();

    // Abort while the second part is on its way.
    interceptSend(s3, async (command, send, options) => {
      if (command.constructor.name === 'UploadPartCommand' && command.input.PartNumber === 2) {
        abort.abort();
      }

      return send(command, options);
    });

    await assert.rejects(upload('aborted.parquet', abort.signal), S3UploadError);

    assert.equal(await objectExists('aborted.parquet'), false);
    assert.equal(await hasNoOpenUploads(), true);
  });
});

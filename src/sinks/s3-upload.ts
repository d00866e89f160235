import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { AbortMultipartUploadCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Logger } from '../logger.ts';

export type S3UploadOptions = {
  s3: S3Client;
  bucket: string;
  key: string;
  path: string;
  partSizeBytes: number;
  /** Parts uploaded at once; memory use is about partSizeBytes times this. */
  concurrency: number;
  logger: Logger;
  signal?: AbortSignal;
};

/**
 * The upload failed and no object was written. Its multipart upload, if one was started, was
 * aborted, unless an error log line names the upload id whose parts remain.
 */
export class S3UploadError extends Error {
  override name = 'S3UploadError';

  constructor(
    readonly bucket: string,
    readonly key: string,
    readonly uploadId: string | undefined,
    options: { cause: unknown },
  ) {
    const reason = options.cause instanceof Error ? options.cause.message : String(options.cause);

    super(`uploading s3://${bucket}/${key} failed: ${reason}`, options);
  }
}

/** Log message for a failed upload whose parts stay in the bucket, naming how to remove them. */
export const ABORT_FAILED_MESSAGE =
  'aborting the multipart upload failed; its parts remain until an ' +
  'AbortIncompleteMultipartUpload lifecycle rule or a later abort removes them';

/**
 * Builds the key of a delivery file:
 * `<prefix>delivery/dt=<UTC date>/delivery-<UTC time as YYYYMMDDTHHMMSSZ>-<8 hex>.parquet`.
 * The random suffix keeps two exports in the same second apart.
 */
export function deliveryObjectKey(prefix: string, now: Date): string {
  const iso = now.toISOString();
  const date = iso.slice(0, 10);
  const stamp = `${iso.slice(0, 19).replaceAll('-', '').replaceAll(':', '')}Z`;
  const suffix = randomBytes(4).toString('hex');

  return `${prefix}delivery/dt=${date}/delivery-${stamp}-${suffix}.parquet`;
}

/**
 * Uploads a finished file as a stream of multipart parts. `If-None-Match: *` makes S3 reject
 * the completion if the key already exists, so an export never overwrites an object, and a
 * failed upload is aborted, so no partial object becomes visible and no parts are kept.
 */
export async function uploadFile(options: S3UploadOptions): Promise<{ sizeBytes: number }> {
  const sizeBytes = (await stat(options.path)).size;
  const body = createReadStream(options.path, { highWaterMark: 1024 * 1024 });
  const upload = new Upload({
    client: options.s3,
    params: {
      Bucket: options.bucket,
      Key: options.key,
      Body: body,
      ContentType: 'application/vnd.apache.parquet',
      ContentLength: sizeBytes,
      IfNoneMatch: '*',
    },
    partSize: options.partSizeBytes,
    queueSize: options.concurrency,
    leavePartsOnError: false,
  });
  const abortUpload = () => void upload.abort();

  options.signal?.addEventListener('abort', abortUpload, { once: true });
  upload.on('httpUploadProgress', (progress) => {
    options.logger.trace(
      { stage: 's3-upload', key: options.key, partNumber: progress.part, bytes: progress.loaded },
      'part uploaded',
    );
  });

  try {
    await upload.done();
  } catch (error) {
    const uploadId = (upload as unknown as { uploadId?: string }).uploadId;

    if (uploadId !== undefined) {
      await abortMultipartUpload(options, uploadId);
    }

    throw new S3UploadError(options.bucket, options.key, uploadId, { cause: error });
  } finally {
    options.signal?.removeEventListener('abort', abortUpload);
    body.destroy();
  }

  return { sizeBytes };
}

/**
 * Aborts a failed multipart upload once more. The Upload class of @aws-sdk/lib-storage aborts
 * on its own but gives up when that request fails. After `abort()` it also rejects at once and
 * sends its abort only when the part in flight returns, when the client may be destroyed. The
 * AbortMultipartUpload API reference advises aborting again anyway, because a part still in
 * flight can outlive the first abort.
 */
async function abortMultipartUpload(options: S3UploadOptions, uploadId: string): Promise<void> {
  const { bucket, key } = options;

  try {
    await options.s3.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
    );
  } catch (error) {
    // NoSuchUpload means the first abort got there.
    if ((error as { name?: string }).name === 'NoSuchUpload') {
      return;
    }

    options.logger.error(
      { stage: 's3-upload', err: error, bucket, key, uploadId },
      ABORT_FAILED_MESSAGE,
    );
  }
}

import {
  ChangeMessageVisibilityBatchCommand,
  type ChangeMessageVisibilityBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { SQS_MAX_BATCH_ENTRIES, SQS_MAX_VISIBILITY_SECONDS } from '../config.ts';
import type { Logger } from '../logger.ts';

/** A received message that the consumer has not deleted or released yet. */
type Lease = { receiptHandle: string; expiresAtMs: number };

export type VisibilityKeeperOptions = {
  sqs: SQSClient;
  queueUrl: string;
  visibilityTimeoutSeconds: number;
  logger: Logger;
  /** Clock, replaceable in tests. */
  now?: () => number;
};

/**
 * Keeps received messages invisible while they are still being stored: every third of the
 * visibility timeout it extends each lease that would otherwise expire before the next round,
 * so a slow database delays a batch instead of causing redelivery. Released leases are made
 * visible again at once, for another consumer to take.
 */
export class VisibilityKeeper {
  readonly #options: VisibilityKeeperOptions;
  readonly #leases = new Map<string, Lease>();
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: VisibilityKeeperOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#leases.size;
  }

  /** Starts the periodic extension; `stop` ends it. */
  start(): void {
    const intervalMs = (this.#options.visibilityTimeoutSeconds * 1000) / 3;

    this.#timer = setInterval(() => void this.extendExpiring(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Records a message as received with the given handle (the newest handle wins). */
  track(messageId: string, receiptHandle: string): void {
    const timeoutMs = this.#options.visibilityTimeoutSeconds * 1000;

    this.#leases.set(messageId, { receiptHandle, expiresAtMs: this.#now() + timeoutMs });
  }

  /** Forgets messages that were deleted, so they are no longer extended. */
  settle(messageIds: Iterable<string>): void {
    for (const messageId of messageIds) {
      this.#leases.delete(messageId);
    }
  }

  /** Extends every lease that expires within the next two thirds of the visibility timeout. */
  async extendExpiring(): Promise<void> {
    const timeoutSeconds = this.#options.visibilityTimeoutSeconds;
    const horizonMs = this.#now() + (timeoutSeconds * 1000 * 2) / 3;
    const expiring = [...this.#leases].filter(([, lease]) => lease.expiresAtMs <= horizonMs);

    if (expiring.length === 0) {
      return;
    }

    const extendedSeconds = Math.min(timeoutSeconds, SQS_MAX_VISIBILITY_SECONDS);
    const extendedIds = await this.#changeVisibility(expiring, extendedSeconds);

    for (const messageId of extendedIds) {
      const lease = this.#leases.get(messageId);

      if (lease) {
        lease.expiresAtMs = this.#now() + extendedSeconds * 1000;
      }
    }

    this.#options.logger.debug(
      { messageCount: extendedIds.length, durationMs: extendedSeconds * 1000 },
      'visibility extended',
    );
  }

  /**
   * Makes every tracked message visible again at once (visibility 0) and stops tracking it. Used on
   * shutdown for messages whose batch did not commit, so nobody waits out the timeout.
   */
  async releaseAll(): Promise<number> {
    const released = [...this.#leases];

    this.#leases.clear();

    const releasedIds = await this.#changeVisibility(released, 0);

    if (releasedIds.length > 0) {
      this.#options.logger.info({ messageCount: releasedIds.length }, 'messages released');
    }

    return releasedIds.length;
  }

  async #changeVisibility(leases: Array<[string, Lease]>, seconds: number): Promise<string[]> {
    const changedIds: string[] = [];

    for (let start = 0; start < leases.length; start += SQS_MAX_BATCH_ENTRIES) {
      const chunk = leases.slice(start, start + SQS_MAX_BATCH_ENTRIES);
      const entries: ChangeMessageVisibilityBatchRequestEntry[] = chunk.map(
        ([messageId, lease], index) => ({
          Id: String(index),
          ReceiptHandle: lease.receiptHandle,
          VisibilityTimeout: seconds,
        }),
      );

      try {
        const response = await this.#options.sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.#options.queueUrl,
            Entries: entries,
          }),
        );
        const failedIds = new Set((response.Failed ?? []).map((entry) => entry.Id));

        chunk.forEach(([messageId], index) => {
          if (!failedIds.has(String(index))) {
            changedIds.push(messageId);
          }
        });

        if (failedIds.size > 0) {
          // A message deleted meanwhile or a stale handle fails here; neither loses data.
          this.#options.logger.debug(
            { messageCount: failedIds.size, errorCode: response.Failed?.[0]?.Code },
            'visibility change failed for some entries',
          );
        }
      } catch (error) {
        this.#options.logger.warn(
          { err: error, messageCount: chunk.length, queueUrl: this.#options.queueUrl },
          'visibility change failed',
        );
      }
    }

    return changedIds;
  }
}

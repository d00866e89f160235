import assert from 'node:assert/strict';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { countQueueMessages } from './aws.ts';

/** Where every sent message ended up. */
export type DeliveryOutcome = {
  storedIds: string[];
  deadLetterIds: string[];
  /** Visible plus in-flight messages still in the queue. */
  queuedCount: number;
};

/** Reads which of the sent messages are stored, dead-lettered and still queued. */
export async function readDeliveryOutcome(
  pool: pg.Pool,
  sqs: SQSClient,
  queueUrl: string,
): Promise<DeliveryOutcome> {
  const stored = await pool.query<{ message_id: string }>(
    'SELECT message_id FROM events.reclamacoes_sqs_events',
  );
  const deadLetters = await pool.query<{ message_id: string }>(
    'SELECT message_id FROM events.dead_letters',
  );

  return {
    storedIds: stored.rows.map((row) => row.message_id),
    deadLetterIds: deadLetters.rows.map((row) => row.message_id),
    queuedCount: await countQueueMessages(sqs, queueUrl),
  };
}

/**
 * Asserts the delivery guarantee: each sent message is exactly one row or one dead letter,
 * never both, nothing else is stored, and the queue is empty.
 */
export function assertDeliveredOnce(outcome: DeliveryOutcome, sentIds: string[]): void {
  const storedSet = new Set(outcome.storedIds);
  const inBoth = outcome.deadLetterIds.filter((messageId) => storedSet.has(messageId));
  const accounted = [...outcome.storedIds, ...outcome.deadLetterIds].sort();

  assert.equal(
    outcome.storedIds.length + outcome.deadLetterIds.length,
    sentIds.length,
    'rows plus dead letters equal the messages sent',
  );
  assert.deepEqual(inBoth, [], 'no message is both a row and a dead letter');
  assert.deepEqual(accounted, [...sentIds].sort(), 'the stored ids are the sent ids');
  assert.equal(outcome.queuedCount, 0, 'the queue is empty');
}

/**
 * Worker thread of ThreadedSqsClient: it holds its own SQS client, configured from the
 * environment like the tool's, and sends each command it is handed.
 */
import { parentPort } from 'node:worker_threads';
import * as sqsCommands from '@aws-sdk/client-sqs';
import { createSqsClient } from '../../src/aws.ts';
import { loadConfig } from '../../src/config.ts';
import type { ThreadReply, ThreadRequest } from './threaded-sqs-client.ts';

type CommandClass = new (input: unknown) => sqsCommands.ReceiveMessageCommand;

const client = createSqsClient(loadConfig(process.env, ''));
const aborts = new Map<number, AbortController>();

function reply(message: ThreadReply): void {
  parentPort?.postMessage(message);
}

async function send(request: Extract<ThreadRequest, { commandName: string }>): Promise<void> {
  const Command = (sqsCommands as unknown as Record<string, CommandClass>)[request.commandName];
  const abort = new AbortController();

  aborts.set(request.id, abort);

  try {
    if (Command === undefined) {
      throw new Error(`unknown SQS command ${request.commandName}`);
    }

    const output = await client.send(new Command(request.input), { abortSignal: abort.signal });

    reply({ id: request.id, output });
  } catch (error) {
    const { name, message, $metadata, $fault } = error as Error & {
      $metadata?: unknown;
      $fault?: unknown;
    };

    reply({ id: request.id, error: { name, message, $metadata, $fault } });
  } finally {
    aborts.delete(request.id);
  }
}

parentPort?.on('message', (request: ThreadRequest) => {
  if ('abortId' in request) {
    aborts.get(request.abortId)?.abort();
  } else {
    void send(request);
  }
});

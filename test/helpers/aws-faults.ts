import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  DeleteMessageBatchCommand,
  type DeleteMessageBatchRequestEntry,
  type DeleteMessageBatchResult,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';

/** A command as `send` receives it; the class name says which one, such as `ReceiveMessageCommand`. */
export type SentCommand = { input: Record<string, unknown>; constructor: { name: string } };

/** The client's own `send`, for an interceptor to pass a command through. */
export type SendFunction = (command: SentCommand, options?: unknown) => Promise<unknown>;

/**
 * Replaces `client.send` with `intercept`, which receives every command and the original `send`
 * and may pass it through, change its input or output, or fail it. Returns a function that
 * puts the original back.
 */
export function interceptSend(
  client: SQSClient | S3Client,
  intercept: (command: SentCommand, send: SendFunction, options?: unknown) => Promise<unknown>,
): () => void {
  const original = client.send.bind(client) as unknown as SendFunction;
  const replaced = client as unknown as { send: SendFunction };

  replaced.send = (command, options) => intercept(command, original, options);

  return () => {
    replaced.send = original;
  };
}

/**
 * Records every message that ReceiveMessage returns, in order, so a test can tell whether one
 * was delivered twice. `restore` puts `send` back.
 */
export function recordReceives(sqs: SQSClient): { received: Message[]; restore: () => void } {
  const received: Message[] = [];
  const restore = interceptSend(sqs, async (command, send, options) => {
    const output = await send(command, options);

    if (command.constructor.name === 'ReceiveMessageCommand') {
      received.push(...((output as { Messages?: Message[] }).Messages ?? []));
    }

    return output;
  });

  return { received, restore };
}

/** An error response that the service could send. */
export type HttpFault = {
  statusCode: number;
  /** Response body as the protocol frames it: JSON for SQS, XML for S3. */
  body: string;
  contentType: string;
};

/** SQS (JSON protocol) refusing a request for its rate. */
export const SQS_THROTTLING: HttpFault = {
  statusCode: 400,
  body: JSON.stringify({ __type: 'com.amazonaws.sqs#ThrottlingException', message: 'Rate exceeded' }),
  contentType: 'application/x-amz-json-1.0',
};

/** SQS failing internally, as a 500 response. */
export const SQS_INTERNAL_ERROR: HttpFault = {
  statusCode: 500,
  body: JSON.stringify({ __type: 'com.amazonaws.sqs#InternalError', message: 'internal error' }),
  contentType: 'application/x-amz-json-1.0',
};

/** S3 asking the client to slow down, as a 503 response. */
export const S3_SLOW_DOWN: HttpFault = {
  statusCode: 503,
  body: '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
  contentType: 'application/xml',
};

/** S3 rejecting a request for good, so a retry gets the same response. */
export const S3_ACCESS_DENIED: HttpFault = {
  statusCode: 403,
  body: '<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>',
  contentType: 'application/xml',
};

/**
 * Fails requests with HTTP error responses in place of the service while `pickFault` returns
 * one for the command name (such as `ReceiveMessageCommand`). The fault is injected below the
 * SDK's retry and deserializer middleware, so every SDK attempt is asked about and the SDK
 * parses and retries the answer as it would a real one. Returns a function that removes it.
 */
export function injectHttpFaults(
  client: SQSClient | S3Client,
  pickFault: (commandName: string) => HttpFault | undefined,
): () => void {
  const stack = client.middlewareStack as unknown as {
    add(middleware: unknown, options: { step: string; priority: string; name: string }): void;
    remove(name: string): boolean;
  };
  const name = `injectHttpFaults-${randomUUID()}`;

  stack.add(
    (next: (args: unknown) => Promise<unknown>, context: { commandName: string }) =>
      async (args: unknown) => {
        const fault = pickFault(context.commandName);

        if (fault === undefined) {
          return next(args);
        }

        return {
          output: undefined,
          response: {
            statusCode: fault.statusCode,
            reason: 'injected by the test',
            headers: { 'content-type': fault.contentType },
            body: Readable.from([Buffer.from(fault.body)]),
          },
        };
      },
    { step: 'deserialize', priority: 'low', name },
  );

  return () => {
    stack.remove(name);
  };
}

/** Returns a picker that fails the first `count` attempts of `commandName` with `fault`. */
export function failFirstAttempts(
  commandName: string,
  count: number,
  fault: HttpFault,
): { pickFault: (name: string) => HttpFault | undefined; attempts: () => number } {
  let attempts = 0;

  return {
    pickFault(name) {
      if (name !== commandName) {
        return undefined;
      }

      attempts += 1;

      return attempts <= count ? fault : undefined;
    },
    attempts: () => attempts,
  };
}

/**
 * Makes DeleteMessageBatch report the entries that `shouldFail` picks as failed inside a
 * successful response, as SQS does, and deletes only the others. `attempt` counts the delete
 * requests for that receipt handle, from 1. Returns a function that puts `send` back.
 */
export function failDeleteEntries(
  sqs: SQSClient,
  shouldFail: (receiptHandle: string, attempt: number) => boolean,
): () => void {
  const attemptsByHandle = new Map<string, number>();

  return interceptSend(sqs, async (command, send, options) => {
    if (command.constructor.name !== 'DeleteMessageBatchCommand') {
      return send(command, options);
    }

    const entries = command.input.Entries as DeleteMessageBatchRequestEntry[];
    const failing = entries.filter((entry) => {
      const handle = entry.ReceiptHandle ?? '';
      const attempt = (attemptsByHandle.get(handle) ?? 0) + 1;

      attemptsByHandle.set(handle, attempt);

      return shouldFail(handle, attempt);
    });
    const passing = entries.filter((entry) => !failing.includes(entry));
    let result: DeleteMessageBatchResult = { Successful: [], Failed: [] };

    if (passing.length > 0) {
      const passingCommand = new DeleteMessageBatchCommand({
        QueueUrl: command.input.QueueUrl as string,
        Entries: passing,
      });

      const output = await send(passingCommand as unknown as SentCommand, options);

      result = output as DeleteMessageBatchResult;
    }

    const injected = failing.map((entry) => ({
      Id: entry.Id,
      Code: 'InternalError',
      SenderFault: false,
      Message: 'injected by the test',
    }));

    return { ...result, Failed: [...(result.Failed ?? []), ...injected] };
  });
}

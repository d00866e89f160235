import { Worker } from 'node:worker_threads';
import type { SQSClient } from '@aws-sdk/client-sqs';

/** A command for a thread to send, or the id of one to abort. */
export type ThreadRequest =
  | { id: number; commandName: string; input: unknown }
  | { abortId: number };

/** The output of a sent command, or its error reduced to what survives a structured clone. */
export type ThreadReply =
  | { id: number; output: unknown }
  | { id: number; error: { name: string; message: string; $metadata?: unknown; $fault?: unknown } };

/**
 * Registers tsx in the thread, then loads the thread's TypeScript module. Under tsx 4.23 and
 * Node.js 20 a worker thread failed to load a .ts file even with `--import tsx` in its
 * execArgv, so the thread starts from this plain script.
 */
const THREAD_BOOTSTRAP = `
  (async () => {
    const { register } = await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))});

    register();
    await import(${JSON.stringify(new URL('./sqs-thread.ts', import.meta.url).href)});
  })();
`;

type Pending = { resolve: (output: unknown) => void; reject: (error: Error) => void };

/**
 * Stands in for an SQSClient and spreads the commands over worker threads, each with a client
 * of its own, so that the SDK's per-call CPU cost (signing, serialization, HTTP) runs beside
 * the pipeline instead of on its thread. An experiment of the benchmark, not part of the tool:
 * only `send` with an optional `abortSignal`, and `destroy`, are supported.
 */
export class ThreadedSqsClient {
  readonly #workers: Worker[];
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;

  constructor(threadCount: number) {
    this.#workers = Array.from({ length: threadCount }, () => {
      const worker = new Worker(THREAD_BOOTSTRAP, { eval: true });

      worker.on('message', (reply: ThreadReply) => this.#settle(reply));
      worker.unref();

      return worker;
    });
  }

  /** Returns this object typed as the client the stages expect. */
  asSqsClient(): SQSClient {
    return this as unknown as SQSClient;
  }

  send(command: { input: unknown }, options?: { abortSignal?: AbortSignal }): Promise<unknown> {
    this.#nextId += 1;

    const id = this.#nextId;
    const worker = this.#workers[id % this.#workers.length] as Worker;
    const commandName = command.constructor.name;

    worker.postMessage({ id, commandName, input: command.input } satisfies ThreadRequest);
    options?.abortSignal?.addEventListener(
      'abort',
      () => worker.postMessage({ abortId: id } satisfies ThreadRequest),
      { once: true },
    );

    return new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
  }

  destroy(): void {
    for (const worker of this.#workers) {
      void worker.terminate();
    }
  }

  #settle(reply: ThreadReply): void {
    const pending = this.#pending.get(reply.id);

    this.#pending.delete(reply.id);

    if ('output' in reply) {
      pending?.resolve(reply.output);

      return;
    }

    pending?.reject(Object.assign(new Error(reply.error.message), reply.error));
  }
}

import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Handling of new client connections: forwarded, or reset at once. */
export type ProxyMode = 'forward' | 'refuse';

export type TcpProxyOptions = {
  /** Host the proxy forwards to, such as `127.0.0.1`. */
  targetHost: string;
  targetPort: number;
  /** Port to listen on, on 127.0.0.1. The default, 0, lets the kernel pick one. */
  port?: number;
  /** Delay added before each forwarded chunk, in both directions. The default is 0. */
  delayMs?: number;
};

/**
 * A TCP proxy on 127.0.0.1 for fault injection: it forwards byte for byte to a target and can
 * cut every open connection, reject new ones, or slow each chunk down, then restore.
 */
export class TcpProxy {
  readonly #options: TcpProxyOptions;
  readonly #server = createServer((client) => this.#accept(client));
  readonly #connections = new Set<[Socket, Socket]>();
  #mode: ProxyMode = 'forward';
  #delayMs: number;
  #acceptedCount = 0;

  constructor(options: TcpProxyOptions) {
    this.#options = options;
    this.#delayMs = options.delayMs ?? 0;
  }

  /** Port the proxy listens on, valid once `start` has resolved. */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** Connections accepted so far, rejected ones included. */
  get acceptedCount(): number {
    return this.#acceptedCount;
  }

  /** Client connections being forwarded now. */
  get openCount(): number {
    return this.#connections.size;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#options.port ?? 0, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  /** Sets the delay added before each forwarded chunk from now on. */
  setDelayMs(delayMs: number): void {
    this.#delayMs = delayMs;
  }

  /** Resets every open connection, on both sides, as a failed network path would. */
  cutAll(): void {
    for (const [client, target] of this.#connections) {
      client.resetAndDestroy();
      target.resetAndDestroy();
    }

    this.#connections.clear();
  }

  /**
   * Resets each new connection right after accepting it, so clients fail to connect with
   * ECONNRESET, much as they fail with ECONNREFUSED while a server is down.
   */
  refuse(): void {
    this.#mode = 'refuse';
  }

  /** Forwards new connections again. */
  restore(): void {
    this.#mode = 'forward';
  }

  /** Cuts every connection and stops listening. */
  async stop(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.#acceptedCount += 1;

    if (this.#mode === 'refuse') {
      client.resetAndDestroy();

      return;
    }

    const target = createConnection({
      host: this.#options.targetHost,
      port: this.#options.targetPort,
    });

    const connection: [Socket, Socket] = [client, target];
    // Either side failing or closing takes the other down, as one broken path would.
    const close = () => {
      this.#connections.delete(connection);
      client.destroy();
      target.destroy();
    };

    this.#connections.add(connection);

    for (const socket of connection) {
      socket.on('error', close);
      socket.on('close', close);
    }

    this.#forward(client, target);
    this.#forward(target, client);
  }

  /**
   * Copies chunks in order. The reader is paused while a chunk waits out its delay or the
   * writer's buffer is full, so chunks never overtake each other and memory stays bounded.
   */
  #forward(from: Socket, to: Socket): void {
    let pending = Promise.resolve();

    const write = (chunk: Buffer) => {
      if (to.destroyed) {
        return;
      }

      if (to.write(chunk)) {
        from.resume();
      } else {
        to.once('drain', () => from.resume());
      }
    };

    from.on('data', (chunk: Buffer) => {
      const delayMs = this.#delayMs;

      from.pause();

      if (delayMs === 0) {
        write(chunk);
      } else {
        pending = sleep(delayMs).then(() => write(chunk));
      }
    });
    from.on('end', () => void pending.then(() => to.end()));
  }
}

/** Starts a proxy on 127.0.0.1 that forwards to the target. */
export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const proxy = new TcpProxy(options);

  await proxy.start();

  return proxy;
}

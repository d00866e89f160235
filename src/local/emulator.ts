import type { AddressInfo } from 'node:net';
import { buildApp } from 'fauxqs';

/** A running SQS and S3 emulator on the loopback interface. */
export type Emulator = {
  /** Value for AWS_ENDPOINT_URL, such as `http://127.0.0.1:4566`. */
  endpointUrl: string;
  port: number;
  stop(): Promise<void>;
};

/**
 * Starts fauxqs, an in-process SQS, SNS and S3 emulator, listening on 127.0.0.1 only. Port 0,
 * the default, lets the kernel pick a free port. It accepts any credentials. Queue URLs it
 * returns use the host `sqs.<region>.localhost`, so clients must set the endpoint explicitly
 * instead of deriving it from the queue URL.
 */
export async function startEmulator(options: { port?: number } = {}): Promise<Emulator> {
  // buildApp lets us choose the interface. fauxqs 1.9.2's startFauxqs always binds 0.0.0.0,
  // which would expose the emulator to the network.
  const app = buildApp({ logger: false });

  await app.listen({ port: options.port ?? 0, host: '127.0.0.1' });

  const { port } = app.server.address() as AddressInfo;

  return {
    endpointUrl: `http://127.0.0.1:${port}`,
    port,
    async stop() {
      await app.close();
    },
  };
}

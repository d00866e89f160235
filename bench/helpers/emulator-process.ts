/**
 * Runs the SQS and S3 emulator in a process of its own, so that its CPU time and memory stay
 * apart from the process being measured. It prints one JSON line, `{"endpointUrl": ...}`,
 * once it listens on 127.0.0.1, and stops when its standard input closes or on SIGTERM.
 */
import { startEmulator } from '../../src/local/emulator.ts';

const emulator = await startEmulator({ port: 0 });

process.stdout.write(`${JSON.stringify({ endpointUrl: emulator.endpointUrl })}\n`);

const stop = () => {
  void emulator.stop().finally(() => process.exit(0));
};

// The parent holds the other end of stdin: its exit, even a crash, closes it.
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

/**
 * Child process of test/store/durability.test.ts: opens the store in argv[2] and enqueues argv[3]
 * items for app "burst", argv[4] at a time, writing "<id> <idempotencyKey>\n" to stdout only after
 * that item's enqueue resolved — exactly what the gateway would have acknowledged to WeCom.
 * The test SIGKILLs it mid-burst.
 */
import { writeSync } from 'node:fs';
import { createLogger } from '../../src/core/logger.ts';
import { createStore } from '../../src/store/index.ts';

const [dir, countArg, concurrencyArg, tag] = process.argv.slice(2);

/**
 * A line on stdout, synchronously: a pipe on a loaded machine fills up (the parent reads slowly), and
 * writeSync then throws EAGAIN on the non-blocking pipe: wait a millisecond and write the rest.
 */
const pause = new Int32Array(new SharedArrayBuffer(4));
function printLine(line: string): void {
  const bytes = Buffer.from(line);
  let off = 0;
  while (off < bytes.length) {
    try {
      off += writeSync(1, bytes, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}
const count = Number(countArg);
const concurrency = Number(concurrencyArg);
const store = await createStore({ config: { dir: dir as string }, logger: createLogger({ level: 'silent' }), clock: Date.now });
printLine('ready\n');
let next = 0;
async function worker(): Promise<void> {
  while (next < count) {
    const key = `${tag}-${next++}`;
    const r = await store.queue.enqueue('burst', {
      idempotencyKey: key,
      eventType: 'text',
      payload: JSON.stringify({ key, pad: 'x'.repeat(400) }),
    });
    if (!r.duplicate) printLine(`${r.id} ${key}\n`);
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
await store.close();
printLine('done\n');

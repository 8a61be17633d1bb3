/**
 * A full disk under a queue-mode callback, for real (a 4 MiB tmpfs mounted by the test, as
 * test/store/full-disk.test.ts does): the callback that cannot be made durable is not acknowledged
 * (503, WeCom retries), and once space is freed WeCom's retry is acknowledged and delivered.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { waitFor } from '../../helpers/gateway.ts';
import { fillDisk, mountSmallTmpfs } from '../../helpers/tmpfs.ts';
import { startCallbackGateway, textMessage } from './helpers.ts';

t.test('callback queue: no ack on a full disk and the retry is acknowledged and delivered when space is freed', async (t) => {
  // Mounted first, so it is unmounted last: after the gateway (and its store) closed.
  const mnt = await mountSmallTmpfs(t, 'wegate-queue-disk-');
  await mkdir(join(mnt, 'state'), { mode: 0o700 });
  const cg = await startCallbackGateway(t, {
    config: { state: { dir: join(mnt, 'state') } },
    deliver: { mode: 'queue', backoff_base_ms: 10, backoff_max_ms: 40 },
    sender: { retries: 0 },
  });
  t.ok((await cg.sender.send(textMessage('8000', 'before'))).acked);
  await waitFor(() => cg.vendor.deliveries.length === 1, 5_000);

  const filler = join(mnt, 'filler');
  await fillDisk(filler);
  // ~60 KB of content: the queued item (xml and fields) does not fit in what SQLite has left.
  const big = textMessage('8001', 'x'.repeat(60_000));
  const refused = await cg.sender.send(big);
  t.equal(refused.last.status, 503, 'not acknowledged: WeCom retries');
  t.match(refused.last.body, /WG_STORE_UNAVAILABLE/);

  await rm(filler);
  const retried = await waitFor(async () => ((await cg.sender.send(big)).acked ? true : undefined), 5_000);
  t.ok(retried, "WeCom's retry is acknowledged once space is back");
  await waitFor(() => cg.vendor.deliveries.length === 2, 5_000);
  t.same(
    cg.vendor.deliveries.map((d) => d.json['msg_id']),
    ['8000', '8001'],
    'delivered once, after the earlier one',
  );
});

/**
 * `deliver.mode: queue` in a real `wegate serve` process: SIGKILLed mid-burst and restarted, several
 * times; every callback WeCom got a 200 for reaches the vendor (zero lost), and a callback delivered
 * twice carries the same idempotency key both times.
 */
import t from 'tap';
import { waitFor } from '../helpers/gateway.ts';
import { startVendor, textMessage } from '../wecom/callback/helpers.ts';
import { post, sender, serve, setup } from './queue-serve-helpers.ts';

t.test(
  'wegate serve: every acknowledged queued callback reaches the vendor when the gateway is SIGKILLed mid-burst and restarted',
  async (t) => {
    const vendor = await startVendor(t);
    const file = await setup(t, vendor.url);
    const acked = new Set<string>();
    let unanswered = 0;
    let next = 0;
    const ROUNDS = 3;
    for (let round = 0; round < ROUNDS; round++) {
      const p = await serve(t, file);
      const s = sender(p.http);
      let ackedThisRound = 0;
      let killed = false;
      // Eight WeCom connections sending distinct messages until the kill (bounded: 200 per round).
      const workers = Array.from({ length: 8 }, async () => {
        for (let i = 0; i < 25 && !killed; i++) {
          const id = String(10_000 + next++);
          const a = await s.request('POST', ...post(s, textMessage(id, `burst ${id}`)));
          if (a.status === 200) {
            acked.add(id);
            if (++ackedThisRound === 30) {
              killed = true;
              p.proc.kill('SIGKILL');
            }
          } else unanswered++;
        }
      });
      await Promise.all(workers);
      if (!killed) p.proc.kill('SIGKILL');
      await p.exited;
    }
    // The last start: it drains what the killed ones left in the queue.
    const last = await serve(t, file);
    const delivered = () => new Set(vendor.deliveries.map((d) => String(d.json['msg_id'])));
    await waitFor(() => [...acked].every((id) => delivered().has(id)), 15_000);
    const got = delivered();
    const lost = [...acked].filter((id) => !got.has(id));
    t.same(lost, [], `zero lost of ${acked.size} acknowledged (${unanswered} unanswered, retried by WeCom in real life)`);
    t.ok(acked.size >= ROUNDS * 30, 'each round acknowledged callbacks before its kill');
    const keys = new Map<string, Set<string>>();
    for (const d of vendor.deliveries) {
      const id = String(d.json['msg_id']);
      keys.set(id, (keys.get(id) ?? new Set()).add(String(d.headers['x-wegate-idempotency-key'])));
    }
    t.same(
      [...keys].filter(([, k]) => k.size !== 1).map(([id]) => id),
      [],
      'a message delivered more than once always carried the same idempotency key',
    );
    t.comment(`acknowledged ${acked.size}, deliveries ${vendor.deliveries.length}, distinct ${got.size}, unanswered ${unanswered}`);
    last.proc.kill('SIGTERM');
    t.equal(await last.exited, 0, 'stops cleanly with the worker idle');
  },
);

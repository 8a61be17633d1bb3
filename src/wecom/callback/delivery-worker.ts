/**
 * The delivery worker of `deliver.mode: queue` (issue 12 item 5): drains the durable callback queue
 * of the state store, per callback in order (store.queue.next leases one item per callback at a
 * time), with the same signed JSON POST as sync mode (deliver.ts). A failed attempt is retried after
 * an exponential backoff with jitter; an item is dead-lettered after `max_attempts` attempts or once
 * older than `max_age_s` (it stays listable and re-drivable from the admin listener).
 *
 * No polling: a callback's loop runs when an item is enqueued (wake) and otherwise sleeps on one timer
 * set for its head's next attempt. close() stops the loops; a delivery in flight finishes (its ack or
 * failure is written), or, when the store is already gone, stays pending and is delivered again after
 * the restart — at-least-once, and the idempotency key makes it exactly-once for the vendor.
 */
import type { Logger } from '../../core/logger.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import type { QueueAppStats, QueueItem, StateStore } from '../../store/index.ts';
import type { Deliverer, DeliverTarget, Delivery } from './deliver.ts';

/** Retry policy of one queue-mode callback (wecom.callbacks[].deliver). */
export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly maxAgeMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

export interface QueueTarget {
  readonly target: DeliverTarget;
  readonly retry: RetryPolicy;
}

export interface DeliveryWorkerDeps {
  readonly store: StateStore;
  /** The queue-mode (and sync-with-fallback) callbacks by name: the queue's `app`. */
  readonly targets: ReadonlyMap<string, QueueTarget>;
  readonly deliverer: Deliverer;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Wall clock, ms. */
  readonly now: () => number;
  /** Uniform in [0, 1): the jitter. */
  readonly random: () => number;
}

export interface DeliveryWorker {
  /** Something was enqueued (or re-driven) for `app`: deliver it now if the head is due. */
  wake(app: string): void;
  /** The per-callback figures of the last look (metrics, /diagnostics). */
  stats(): Promise<QueueAppStats[]>;
  /** Stop the loops; resolves once the deliveries in flight are settled. */
  close(): Promise<void>;
}

/**
 * Backoff before attempt `attempts + 1`: base · 2^(attempts − 1), capped, with "equal jitter" (half
 * fixed, half random) so a vendor coming back is not hit by every callback at the same instant.
 */
export function backoffMs(policy: RetryPolicy, attempts: number, random: () => number): number {
  const exp = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** Math.min(30, Math.max(0, attempts - 1)));
  return Math.max(1, Math.round(exp / 2 + (exp / 2) * random()));
}

export function createDeliveryWorker(deps: DeliveryWorkerDeps): DeliveryWorker {
  const { store, targets, deliverer, logger, metrics, now } = deps;
  const running = new Map<string, Promise<void>>();
  /** A wake arrived while the loop ran: look once more before sleeping. */
  const again = new Set<string>();
  const timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  let closed = false;

  const sleepUntil = (app: string, at: number) => {
    const t = timers.get(app);
    if (t !== undefined && t.at <= at) return;
    if (t !== undefined) clearTimeout(t.timer);
    const timer = setTimeout(
      () => {
        timers.delete(app);
        wake(app);
      },
      Math.max(0, at - now()),
    );
    timer.unref();
    timers.set(app, { at, timer });
  };

  const deliverOne = async (app: string, q: QueueTarget, item: QueueItem): Promise<void> => {
    const log = { callback: app, queue_id: item.id, event: item.eventType, attempt: item.attempts + 1 };
    if (now() - item.createdAt > q.retry.maxAgeMs) {
      await store.queue.deadLetter(item.id, `older than ${Math.round(q.retry.maxAgeMs / 1000)} s`);
      metrics.wecomCallbackDeliveries.inc({ callback: app, result: 'dead_letter' });
      logger.error({ ...log, outcome: 'dead_letter' }, 'wecom callback dead-lettered: too old');
      return;
    }
    let message: Delivery;
    try {
      message = JSON.parse(item.payload.toString('utf8')) as Delivery;
    } catch {
      await store.queue.deadLetter(item.id, 'payload is not JSON');
      metrics.wecomCallbackDeliveries.inc({ callback: app, result: 'dead_letter' });
      return;
    }
    const r = await deliverer.deliver(q.target, message);
    metrics.wecomCallbackDeliveries.inc({ callback: app, result: r.ok ? 'ok' : r.result });
    if (r.ok) {
      await store.queue.ack(item.id);
      logger.info({ ...log, outcome: 'ok' }, 'wecom callback delivered from the queue');
      return;
    }
    const error = `${r.result}: ${r.detail}`;
    if (item.attempts + 1 >= q.retry.maxAttempts) {
      // Count the last attempt and its error first, so the listing shows all of them (this loop is the
      // only one leasing this callback's items: nothing takes the item between the two writes).
      await store.queue.fail(item.id, now(), error);
      await store.queue.deadLetter(item.id, `${q.retry.maxAttempts} attempts failed, last ${error}`);
      metrics.wecomCallbackDeliveries.inc({ callback: app, result: 'dead_letter' });
      logger.error({ ...log, outcome: 'dead_letter', detail: error }, 'wecom callback dead-lettered: attempts exhausted');
      return;
    }
    const at = now() + backoffMs(q.retry, item.attempts + 1, deps.random);
    await store.queue.fail(item.id, at, error);
    logger.warn({ ...log, outcome: 'retry', detail: error, retry_in_ms: at - now() }, 'wecom callback delivery failed: retried later');
  };

  const loop = async (app: string, q: QueueTarget): Promise<void> => {
    do {
      again.delete(app);
      for (;;) {
        if (closed) return;
        const item = await store.queue.next(app);
        if (item === undefined) break;
        await deliverOne(app, q, item);
      }
    } while (again.has(app) && !closed);
    // Nothing due now: sleep until the head's next attempt, if there is a head.
    const s = (await store.queue.stats()).find((x) => x.app === app);
    if (s?.headDueAt !== undefined && !closed) sleepUntil(app, s.headDueAt);
  };

  function wake(app: string): void {
    if (closed) return;
    const q = targets.get(app);
    if (q === undefined) return;
    if (running.has(app)) {
      again.add(app);
      return;
    }
    const p = loop(app, q)
      .catch((err: unknown) => {
        // The store is unavailable (full disk …): try again in a second, the item is still pending.
        logger.warn({ callback: app, err: (err as Error).message }, 'wecom callback queue: delivery loop interrupted');
        if (!closed) sleepUntil(app, now() + 1_000);
      })
      .finally(() => {
        running.delete(app);
        if (again.has(app)) wake(app);
      });
    running.set(app, p);
  }

  // What was pending before the restart is delivered now.
  for (const app of targets.keys()) wake(app);

  return {
    wake,
    stats: () => store.queue.stats(),
    async close() {
      closed = true;
      for (const t of timers.values()) clearTimeout(t.timer);
      timers.clear();
      await Promise.allSettled([...running.values()]);
    },
  };
}

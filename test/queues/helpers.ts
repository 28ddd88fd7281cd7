import { env } from "cloudflare:workers";
import { expect } from "vitest";
import type { OrderMessage } from "../../lib/order";
import type { OrderStore } from "../../lib/order-rows";

/** A valid order message for `userId` (order number `n`; `tag` keeps ids apart between runs or files). */
export function orderMsg(userId: string, n: number, over: Partial<OrderMessage> = {}, tag = ""): OrderMessage {
  const orderId = `ord_${tag}${String(n).padStart(20 - tag.length, "0")}.evt_queue0000000000000000.floor.0`;
  return {
    v: 1,
    kind: "order.paid",
    orderId,
    userId,
    eventId: "evt_queue0000000000000000",
    sectionId: "floor",
    holdId: orderId.replace("ord_", "hld_"),
    seats: [],
    quantity: 2,
    total: 9000,
    currency: "EUR",
    tickets: [
      { id: `tkt_${tag}${n}_1`, seat: "floor/GA-1", code: "c1" },
      { id: `tkt_${tag}${n}_2`, seat: "floor/GA-2", code: "c2" },
    ],
    paidAt: new Date(Date.now() - n * 1000).toISOString(),
    payment: { provider: "sandbox", chargeId: `ch_${tag}${n}` },
    ...over,
  };
}

/** Rows of an order id in each D1 shard. */
export async function rowsPerShard(orderId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const shard of ["SHARD_0", "SHARD_1"] as const) {
    const r = await env[shard].prepare("SELECT count(*) AS n FROM orders WHERE id = ?").bind(orderId).first<{ n: number }>();
    out[shard] = r?.n ?? 0;
  }
  return out;
}

/** Rows of an order id over all D1 shards. */
export const totalRows = async (orderId: string): Promise<number> => Object.values(await rowsPerShard(orderId)).reduce((a, b) => a + b, 0);

/** Polls `fn` until it returns true (queues deliver asynchronously). */
export async function eventually(fn: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > until) {
      expect.fail("condition not met in time");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Waits until the orders queue has delivered what was sent before this call: sends a fresh sentinel order
 * behind it and polls until the sentinel is stored. (A check that something did *not* happen needs this
 * rather than a sleep: on a loaded machine a sleep can end before the consumer has run.)
 */
export async function ordersQueueSettled(): Promise<void> {
  const tag = Math.random().toString(36).slice(2, 8);
  const sentinel = orderMsg(`sentinel-${tag}`, 1, {}, tag);
  await env.ORDERS_QUEUE.send(sentinel, { contentType: "json" });
  await eventually(async () => (await totalRows(sentinel.orderId)) === 1);
}

/** What a consumer did with one hand-made message. */
export interface Outcome {
  acked: boolean;
  retry?: QueueRetryOptions;
}

/**
 * A batch of hand-made messages that records each message's ack/retry, including the retry delay (which
 * `getQueueResult` does not report). `attempts` is what Queues would say for a redelivery.
 */
export function recordingBatch(queue: string, bodies: unknown[], attempts = 1): { batch: MessageBatch; outcomes: Outcome[] } {
  const outcomes: Outcome[] = bodies.map(() => ({ acked: false }));
  const messages = bodies.map(
    (body, i) =>
      ({
        id: `${queue}-${crypto.randomUUID()}`,
        timestamp: new Date(),
        attempts,
        body,
        ack: () => {
          (outcomes[i] as Outcome).acked = true;
        },
        retry: (o?: QueueRetryOptions) => {
          (outcomes[i] as Outcome).retry = o ?? {};
        },
      }) as unknown as Message,
  );
  const batch = {
    queue,
    messages,
    ackAll: () => {
      for (const m of messages) m.ack();
    },
    retryAll: (o?: QueueRetryOptions) => {
      for (const m of messages) m.retry(o);
    },
  } as unknown as MessageBatch;
  return { batch, outcomes };
}

/** A queue producer that records what is sent (and can be made to fail). */
export function recordingQueue(opts: { fail?: () => boolean } = {}): Queue & { bodies: unknown[]; calls: number } {
  const q = {
    bodies: [] as unknown[],
    calls: 0,
    async send(body: unknown) {
      q.calls++;
      if (opts.fail?.()) throw new Error("queue unavailable");
      q.bodies.push(body);
    },
    async sendBatch(messages: Iterable<MessageSendRequest>) {
      q.calls++;
      if (opts.fail?.()) throw new Error("queue unavailable");
      for (const m of messages) q.bodies.push(m.body);
    },
    async metrics() {
      return { backlogCount: 0, backlogBytes: 0 };
    },
  };
  return q as unknown as Queue & { bodies: unknown[]; calls: number };
}

/** `store` with its writes (`saveOrder`, `saveOrders`) failing while `failing()` says so (the other methods are the real ones). */
export function flakyStore(store: OrderStore, failing: () => boolean): OrderStore {
  const flaky: OrderStore = Object.create(store);
  flaky.saveOrder = async (m) => {
    if (failing()) throw new Error(`D1_ERROR: shard ${store.name} unavailable`);
    return store.saveOrder(m);
  };
  flaky.saveOrders = async (ms) => {
    if (failing()) throw new Error(`D1_ERROR: shard ${store.name} unavailable`);
    return store.saveOrders(ms);
  };
  return flaky;
}

/** A fresh tag for ids, so rows of one test never meet another's. */
export const freshTag = (): string => Math.random().toString(36).slice(2, 8);

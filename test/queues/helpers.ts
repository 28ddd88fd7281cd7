import { env } from "cloudflare:workers";
import { expect } from "vitest";
import type { OrderMessage } from "../../queues/orders";

/** A valid order message for `userId`. */
export function orderMsg(userId: string, n: number, over: Partial<OrderMessage> = {}): OrderMessage {
  const orderId = `ord_${String(n).padStart(20, "0")}.evt_queue0000000000000000.floor.0`;
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
      { id: `tkt_${n}_1`, seat: "floor/GA-1", code: "c1" },
      { id: `tkt_${n}_2`, seat: "floor/GA-2", code: "c2" },
    ],
    paidAt: new Date(Date.now() - n * 1000).toISOString(),
    payment: { provider: "sandbox", chargeId: `ch_${n}` },
    ...over,
  };
}

/** Rows of an order id in each shard. */
export async function rowsPerShard(orderId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const shard of ["SHARD_0", "SHARD_1"] as const) {
    const r = await env[shard].prepare("SELECT count(*) AS n FROM orders WHERE id = ?").bind(orderId).first<{ n: number }>();
    out[shard] = r?.n ?? 0;
  }
  return out;
}

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

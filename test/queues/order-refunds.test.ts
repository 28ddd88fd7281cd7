import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { OrderRefundedMessage } from "../../lib/order";
import type { OrderStore } from "../../lib/order-rows";
import { D1OrderStore } from "../../lib/order-store";
import { PgOrderStore } from "../../lib/order-store-pg";
import { shardFor } from "../../lib/shards";
import { consumeOrders, type OrdersConsumerDeps } from "../../queues/orders";
import { freshTag, orderMsg, recordingBatch, recordingQueue } from "./helpers";

const SHARDS = ["SHARD_0", "SHARD_1"];
const d1 = (shard: string): OrderStore => new D1OrderStore(shard, env[shard as "SHARD_0"]);

/** The refund message of ticket `n` (1-based) of an order message. */
const refundOf = (msg: ReturnType<typeof orderMsg>, tickets: string[], over: Partial<OrderRefundedMessage> = {}): OrderRefundedMessage => ({
  v: 1,
  kind: "order.refunded",
  refundKey: `${msg.orderId.split(".")[0]}:refund:${tickets.join("+")}`,
  orderId: msg.orderId,
  userId: msg.userId,
  eventId: msg.eventId,
  tickets,
  status: tickets.length === msg.tickets.length ? "refunded" : "partially_refunded",
  amount: (msg.total / msg.quantity) * tickets.length,
  currency: msg.currency,
  cause: "organizer",
  refundedAt: new Date().toISOString(),
  ...over,
});

describe("order shards: refunds", () => {
  for (const [name, storeOf] of [
    ["D1", d1],
    ["PostgreSQL", (s: string): OrderStore => PgOrderStore.connect(s, env.TEST_PG.urls[SHARDS.indexOf(s)] as string, 1)],
  ] as const)
    it(`${name}: voids a refund's tickets (idempotent; the order's status follows its tickets); an order not stored yet is missing`, async () => {
      const tag = freshTag();
      const msg = orderMsg(`${tag}-refund-buyer`, 1, {}, tag);
      const store = storeOf("SHARD_0");
      const [t1, t2] = msg.tickets.map((t) => t.id) as [string, string];
      expect(await store.applyRefund(refundOf(msg, [t1]))).toBe("missing");
      await store.saveOrder(msg);
      for (let i = 0; i < 2; i++) expect(await store.applyRefund(refundOf(msg, [t1]))).toBe("applied");
      const partial = await store.getOrder(msg.orderId);
      expect(partial?.status).toBe("partially_refunded");
      expect(partial?.tickets.map((t) => [t.id, t.status])).toEqual([
        [t1, "void"],
        [t2, "valid"],
      ]);
      expect(await store.applyRefund(refundOf(msg, [t2]))).toBe("applied");
      expect((await store.getOrder(msg.orderId))?.status).toBe("refunded");
    });
});

describe("orders consumer: order.refunded", () => {
  it("retries a refund whose order is not in its shard yet; once stored, voids it and queues the notice, the webhook and the analytics event once each", async () => {
    const tag = freshTag();
    const msg = orderMsg(`${tag}-consumer`, 2, {}, tag);
    const refund = refundOf(msg, [msg.tickets[0]?.id as string], { reason: "double booking" });
    const notifications = recordingQueue();
    const analytics = recordingQueue();
    const confirmed: string[] = [];
    const deps: OrdersConsumerDeps = {
      shards: SHARDS,
      store: d1,
      notifications,
      analytics,
      deadLetter: async () => {},
      confirmStored: async () => {},
      confirmRefunds: async (r) => void confirmed.push(...r.map((x) => x.refundKey)),
    };
    const early = recordingBatch("breakwater-orders", [refund]);
    await consumeOrders(early.batch, deps);
    expect(early.outcomes[0]?.acked).toBe(false);
    expect(early.outcomes[0]?.retry?.delaySeconds).toBeGreaterThan(0);
    expect(notifications.bodies).toEqual([]);

    // The order and its refund in one batch: the order is stored first, then the refund applies.
    const both = recordingBatch("breakwater-orders", [refund, msg], 2);
    await consumeOrders(both.batch, deps);
    expect(both.outcomes.map((o) => o.acked)).toEqual([true, true]);
    const row = await d1(shardFor(msg.userId, SHARDS)).getOrder(msg.orderId);
    expect(row?.status).toBe("partially_refunded");
    expect(confirmed).toEqual([refund.refundKey]);
    const kinds = (notifications.bodies as { kind: string; notice?: string; type?: string; id: string }[]).map((b) => [
      b.kind,
      b.notice ?? b.type,
      b.id,
    ]);
    expect(kinds).toEqual(
      expect.arrayContaining([
        ["buyer.notice", "order.refunded", `order.refunded:${refund.refundKey}`],
        ["organizer.event", "order.refunded", `order.refunded:${refund.refundKey}`],
      ]),
    );
    expect((analytics.bodies as { kind: string; amount: number; id: string }[]).filter((a) => a.kind === "order.refunded")).toEqual([
      expect.objectContaining({ id: `order.refunded:${refund.refundKey}`, amount: refund.amount }),
    ]);
  });
});

import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type OrderMessage, orderBodyOf, orderMessage, orderSchema, paidOrderOf } from "../../lib/order";
import type { OrderStore } from "../../lib/order-rows";
import { D1OrderStore } from "../../lib/order-store";
import { shardFor } from "../../lib/shards";
import { consumeOrders, type OrdersConsumerDeps } from "../../queues/orders";
import worker from "../../workers/index";
import { call, tokenFor } from "../helpers";
import {
  eventually,
  flakyStore,
  freshTag,
  orderMsg,
  ordersQueueSettled,
  recordingBatch,
  recordingQueue,
  rowsPerShard,
  totalRows,
} from "./helpers";

const SHARDS = ["SHARD_0", "SHARD_1"];
const realStore = (shard: string): OrderStore => new D1OrderStore(shard, env[shard as "SHARD_0"]);
const batchOf = (queue: string, bodies: unknown[]) =>
  createMessageBatch(
    queue,
    bodies.map((body) => ({ id: `m-${crypto.randomUUID()}`, timestamp: new Date(), attempts: 1, body })),
  );
const deps = (over: Partial<OrdersConsumerDeps> = {}): OrdersConsumerDeps => ({
  shards: SHARDS,
  store: realStore,
  notifications: recordingQueue(),
  analytics: recordingQueue(),
  deadLetter: async () => {},
  confirmStored: async () => {},
  ...over,
});
/** Buyers owned by `shard`. */
const buyersOf = (shard: string, n: number, tag: string): string[] => {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if (shardFor(`${tag}-buyer-${i}`, SHARDS) === shard) out.push(`${tag}-buyer-${i}`);
  return out;
};

describe("orders consumer", () => {
  it("puts every paid order in exactly the shard that owns its buyer once the queues drain; replays change nothing", async () => {
    const tag = freshTag();
    const msgs = Array.from({ length: 12 }, (_, i) => orderMsg(`${tag}-buyer-${i}`, 100 + i, {}, tag));
    for (let round = 0; round < 2; round++) {
      const batch = batchOf("breakwater-orders", msgs);
      const ctx = createExecutionContext();
      await worker.queue(batch, env, ctx);
      const result = await getQueueResult(batch, ctx);
      expect(result.explicitAcks.sort()).toEqual(batch.messages.map((m) => m.id).sort());
      expect(result.retryMessages).toEqual([]);
    }
    expect(new Set(msgs.map((m) => shardFor(m.userId, SHARDS))).size).toBe(2);
    for (const m of msgs) {
      const owner = shardFor(m.userId, SHARDS);
      expect(await rowsPerShard(m.orderId)).toEqual({ SHARD_0: owner === "SHARD_0" ? 1 : 0, SHARD_1: owner === "SHARD_1" ? 1 : 0 });
      const tickets = await env[owner as "SHARD_0"]
        .prepare("SELECT id, seat, code FROM tickets WHERE order_id = ? ORDER BY id")
        .bind(m.orderId)
        .all<{ id: string; seat: string; code: string }>();
      expect(tickets.results).toEqual(m.tickets);
    }
    // The follow-ups went through the real queues: one confirmation per order in the owner's outbox, one
    // analytics row per order, despite the replay.
    await eventually(async () => {
      const mails = await Promise.all(
        msgs.map((m) =>
          env[shardFor(m.userId, SHARDS) as "SHARD_0"]
            .prepare("SELECT count(*) AS n FROM mail_outbox WHERE order_id = ?")
            .bind(m.orderId)
            .first<{ n: number }>(),
        ),
      );
      return mails.every((r) => r?.n === 1);
    });
    await eventually(async () => {
      const r = await env.CATALOG_DB.prepare("SELECT count(*) AS n FROM analytics_events WHERE id LIKE ?")
        .bind(`order.paid:ord_${tag}%`)
        .first<{ n: number }>();
      return r?.n === msgs.length;
    });
  });

  it("hands on one confirmation and one analytics event per stored order, in one sendBatch each", async () => {
    const tag = freshTag();
    const notifications = recordingQueue();
    const analytics = recordingQueue();
    const a = orderMsg(
      `${tag}-a`,
      1,
      { organizerId: "org-1", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
      tag,
    );
    const b = orderMsg(`${tag}-b`, 2, {}, tag);
    const { batch, outcomes } = recordingBatch("breakwater-orders", [a, b, a]);
    await consumeOrders(batch, deps({ notifications, analytics }));
    expect(outcomes.map((o) => o.acked)).toEqual([true, true, true]);
    expect(notifications.calls).toBe(1);
    expect(analytics.calls).toBe(1);
    expect(notifications.bodies).toHaveLength(2); // the duplicate in the batch is handed on once
    expect(notifications.bodies).toContainEqual({
      v: 1,
      kind: "order.confirmation",
      orderId: a.orderId,
      userId: a.userId,
      eventId: a.eventId,
      shard: shardFor(a.userId, SHARDS),
      total: 9000,
      currency: "EUR",
      tickets: 2,
      ticketList: a.tickets.map((t) => ({ id: t.id, seat: t.seat })),
      organizerId: "org-1",
      traceparent: a.traceparent,
    });
    expect(analytics.bodies).toContainEqual({
      id: `order.paid:${b.orderId}`,
      kind: "order.paid",
      eventId: b.eventId,
      at: b.paidAt,
      userId: b.userId,
      quantity: 2,
      amount: 9000,
    });
  });

  it("retries with backoff while a shard fails, then stores exactly once when it recovers", async () => {
    const msg = orderMsg(`${freshTag()}-flaky`, 200);
    let failures = 2;
    const store = (s: string) => flakyStore(realStore(s), () => failures-- > 0);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const { batch, outcomes } = recordingBatch("breakwater-orders", [msg], attempt);
      await consumeOrders(batch, deps({ store }));
      const [outcome] = outcomes;
      if (attempt < 3) {
        expect(outcome?.acked).toBe(false);
        // Orders wait at least half of each ceiling (5 s doubling to 10 min: ORDERS_QUEUE_RETRY).
        const ceiling = Math.min(600, 5 * 2 ** (attempt - 1));
        expect(outcome?.retry?.delaySeconds).toBeGreaterThanOrEqual(ceiling / 2);
        expect(outcome?.retry?.delaySeconds).toBeLessThanOrEqual(ceiling);
        expect(await totalRows(msg.orderId)).toBe(0);
      } else {
        expect(outcome).toEqual({ acked: true });
      }
    }
    expect(await totalRows(msg.orderId)).toBe(1);
  });

  it("does not try a failed shard again in the same batch; the other shard's orders are stored and acked", async () => {
    const tag = freshTag();
    const down = buyersOf("SHARD_0", 3, tag).map((u, i) => orderMsg(u, 10 + i, {}, tag));
    const up = buyersOf("SHARD_1", 2, tag).map((u, i) => orderMsg(u, 20 + i, {}, tag));
    let calls = 0;
    const store = (s: string) =>
      s === "SHARD_0"
        ? flakyStore(realStore(s), () => {
            calls++;
            return true;
          })
        : realStore(s);
    const { batch, outcomes } = recordingBatch("breakwater-orders", [down[0], up[0], down[1], up[1], down[2]]);
    await consumeOrders(batch, deps({ store }));
    expect(calls).toBe(1);
    expect(outcomes.map((o) => (o.acked ? "ack" : o.retry ? "retry" : "none"))).toEqual(["retry", "ack", "retry", "ack", "retry"]);
    for (const m of up) expect(await rowsPerShard(m.orderId)).toEqual({ SHARD_0: 0, SHARD_1: 1 });
    for (const m of down) expect(await totalRows(m.orderId)).toBe(0);
  });

  it("retries stored orders whose hand-off failed; the retry only re-sends", async () => {
    const msg = orderMsg(`${freshTag()}-handoff`, 300);
    let fail = true;
    const notifications = recordingQueue({ fail: () => fail });
    const first = recordingBatch("breakwater-orders", [msg]);
    await consumeOrders(first.batch, deps({ notifications }));
    expect(first.outcomes[0]?.acked).toBe(false);
    expect(first.outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(1);
    expect(await totalRows(msg.orderId)).toBe(1);
    fail = false;
    const second = recordingBatch("breakwater-orders", [msg], 2);
    await consumeOrders(second.batch, deps({ notifications }));
    expect(second.outcomes[0]).toEqual({ acked: true });
    expect(notifications.bodies).toHaveLength(1);
    expect(await totalRows(msg.orderId)).toBe(1);
  });

  it("acknowledges an invalid message and records it as a dead letter at once", async () => {
    const good = orderMsg(`${freshTag()}-valid`, 400);
    const batch = batchOf("breakwater-orders", [
      { kind: "order.paid", orderId: "x" },
      { ...good, quantity: 3 }, // three places sold, two tickets
      { ...good, tickets: [good.tickets[0], good.tickets[0]] }, // the same ticket twice
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toHaveLength(3);
    expect(result.retryMessages).toEqual([]);
    const errors: string[] = [];
    for (const m of batch.messages) {
      const row = await env.CATALOG_DB.prepare("SELECT queue, status, last_error FROM dead_letters WHERE id = ?")
        .bind(`breakwater-orders:${m.id}`)
        .first<{ queue: string; status: string; last_error: string }>();
      expect(row).toMatchObject({ queue: "breakwater-orders", status: "dead" });
      errors.push(row?.last_error ?? "");
    }
    expect(errors[0]).toContain("invalid message");
    expect(errors[1]).toContain("2 ticket(s) for quantity 3");
    expect(errors[2]).toContain("ticket ids repeat");
    expect(await totalRows(good.orderId)).toBe(0);
  });

  it("retries an invalid message when its dead letter cannot be recorded (it reaches the DLQ later)", async () => {
    const { batch, outcomes } = recordingBatch("breakwater-orders", [{ nope: true }], 3);
    await consumeOrders(
      batch,
      deps({
        deadLetter: async () => {
          throw new Error("D1_ERROR: catalog unavailable");
        },
      }),
    );
    expect(outcomes[0]?.acked).toBe(false);
    expect(outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(1);
  });
});

describe("order message", () => {
  it("the schema refuses what would make a broken row", () => {
    const msg = orderMsg("producer", 1);
    expect(orderMessage.safeParse({ ...msg, currency: "EURO" }).success).toBe(false);
    expect(orderMessage.safeParse({ ...msg, tickets: [] } as OrderMessage).success).toBe(false);
    expect(orderMessage.safeParse({ ...msg, tickets: [msg.tickets[0], msg.tickets[0]], quantity: 2 }).success).toBe(false);
    expect(orderMessage.safeParse({ ...msg, extra: "ignored", organizerId: "o" }).success).toBe(true);
  });

  it("is the order document an Inventory DO keeps: derived from the message, or read as an older row stored it", () => {
    const msg = orderMsg("document", 2);
    const doc = paidOrderOf(msg);
    expect(doc).toEqual({
      id: msg.orderId,
      status: "paid",
      eventId: msg.eventId,
      sectionId: msg.sectionId,
      holdId: msg.holdId,
      seats: msg.seats,
      quantity: msg.quantity,
      total: msg.total,
      currency: msg.currency,
      tickets: msg.tickets.map((t) => ({ ...t, status: "valid" })),
      createdAt: msg.paidAt,
    });
    expect(orderSchema.safeParse(doc).success).toBe(true);
    expect(orderBodyOf("", JSON.stringify(msg))).toEqual(doc);
    const older = { ...doc, createdAt: "2026-12-01T10:00:00.000Z" };
    expect(orderBodyOf(JSON.stringify(older), JSON.stringify(msg))).toEqual(older);
  });
});

describe("dead letters of the orders queue", () => {
  it("a message that keeps failing is retried with growing backoff, lands in the DLQ, shows in the admin route, and a replay after the fix stores it once", async () => {
    const msg = orderMsg(`${freshTag()}-dlq`, 500);
    const broken = (s: string) => flakyStore(realStore(s), () => true);
    // max_retries = 8 (wrangler.toml): 9 deliveries, each waiting at least half of a doubling ceiling.
    const ceilings: number[] = [];
    for (let attempt = 1; attempt <= 9; attempt++) {
      const { batch, outcomes } = recordingBatch("breakwater-orders", [msg], attempt);
      await consumeOrders(batch, deps({ store: broken }));
      expect(outcomes[0]?.acked).toBe(false);
      const delay = outcomes[0]?.retry?.delaySeconds ?? 0;
      ceilings.push(Math.min(600, 5 * 2 ** (attempt - 1)));
      expect(delay).toBeGreaterThanOrEqual((ceilings[attempt - 1] as number) / 2);
      expect(delay).toBeLessThanOrEqual(ceilings[attempt - 1] as number);
    }
    expect(await totalRows(msg.orderId)).toBe(0);

    // Queues then moves it to the DLQ, whose consumer records it.
    const dlq = batchOf("breakwater-orders-dlq", [msg]);
    const ctx = createExecutionContext();
    await worker.queue(dlq, env, ctx);
    expect((await getQueueResult(dlq, ctx)).explicitAcks).toHaveLength(1);

    const admin = await tokenFor("ops-admin", "admin");
    const list = await call("/v1/admin/dead-letters?queue=breakwater-orders&status=dead", { token: admin });
    expect(list.status).toBe(200);
    const { deadLetters } = (await list.json()) as { deadLetters: { id: string; body: { orderId?: string }; lastError: string }[] };
    const dl = deadLetters.find((d) => d.body.orderId === msg.orderId);
    expect(dl?.id).toBe(`breakwater-orders:${dlq.messages[0]?.id}`);
    expect(dl?.lastError).toContain("exhausted retries");

    // The fault is fixed (the real store); the replay goes through the real queue to the orders consumer.
    const replay = await call("/v1/admin/dead-letters/replay", { method: "POST", token: admin, json: { ids: [dl?.id] } });
    expect(replay.status).toBe(200);
    expect(((await replay.json()) as { replayed: string[] }).replayed).toEqual([dl?.id]);
    await eventually(async () => (await totalRows(msg.orderId)) === 1);
    const again = await call("/v1/admin/dead-letters/replay", { method: "POST", token: admin, json: { ids: [dl?.id] } });
    expect(((await again.json()) as { replayed: string[] }).replayed).toEqual([]);
    // Even the same message delivered once more (at least once) leaves a single row.
    await env.ORDERS_QUEUE.send(msg, { contentType: "json" });
    await ordersQueueSettled();
    expect(await rowsPerShard(msg.orderId)).toEqual({
      SHARD_0: shardFor(msg.userId, SHARDS) === "SHARD_0" ? 1 : 0,
      SHARD_1: shardFor(msg.userId, SHARDS) === "SHARD_1" ? 1 : 0,
    });
  });
});

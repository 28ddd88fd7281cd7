import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { D1OrderStore, type OrderStore } from "../../lib/order-store";
import { shardFor } from "../../lib/shards";
import { consumeOrders } from "../../queues/orders";
import worker from "../../workers/index";
import { call, tokenFor } from "../helpers";
import { eventually, orderMsg, rowsPerShard } from "./helpers";

const SHARDS = ["SHARD_0", "SHARD_1"];
let seq = 0;
const batchOf = (queue: string, bodies: unknown[]) =>
  createMessageBatch(
    queue,
    bodies.map((body) => ({ id: `m-${++seq}`, timestamp: new Date(), attempts: 1, body })),
  );

describe("orders consumer", () => {
  it("stores each order once, in the shard that owns its buyer, and replays change nothing", async () => {
    const msgs = Array.from({ length: 12 }, (_, i) => orderMsg(`buyer-${i}`, 100 + i));
    for (let round = 0; round < 2; round++) {
      const batch = batchOf("breakwater-orders", msgs);
      const ctx = createExecutionContext();
      await worker.queue(batch, env, ctx);
      const result = await getQueueResult(batch, ctx);
      expect(result.explicitAcks.sort()).toEqual(batch.messages.map((m) => m.id).sort());
      expect(result.retryMessages).toEqual([]);
    }
    for (const m of msgs) {
      const rows = await rowsPerShard(m.orderId);
      expect(rows).toEqual({
        SHARD_0: shardFor(m.userId, SHARDS) === "SHARD_0" ? 1 : 0,
        SHARD_1: shardFor(m.userId, SHARDS) === "SHARD_1" ? 1 : 0,
      });
      const tickets = await env[shardFor(m.userId, SHARDS) as "SHARD_0"]
        .prepare("SELECT count(*) AS n FROM tickets WHERE order_id = ?")
        .bind(m.orderId)
        .first<{ n: number }>();
      expect(tickets?.n).toBe(2);
    }
    expect(new Set(msgs.map((m) => shardFor(m.userId, SHARDS))).size).toBe(2);
  });

  it("retries with backoff while a shard fails, then stores exactly once when it recovers", async () => {
    const msg = orderMsg("flaky-buyer", 200);
    let failures = 2;
    const real = (shard: string) => new D1OrderStore(shard, env[shard as "SHARD_0"]);
    const store = (shard: string): OrderStore => {
      const s = real(shard);
      return {
        ...s,
        name: s.name,
        getOrder: (id) => s.getOrder(id),
        listOrders: (u, l) => s.listOrders(u, l),
        orderIdsForEvent: (e) => s.orderIdsForEvent(e),
        recordMail: (m) => s.recordMail(m),
        saveOrder: async (m) => {
          if (failures-- > 0) throw new Error("D1_ERROR: shard unavailable");
          return s.saveOrder(m);
        },
      };
    };
    const deps = {
      shards: SHARDS,
      store,
      notifications: env.NOTIFICATIONS_QUEUE,
      analytics: env.ANALYTICS_QUEUE,
      deadLetter: async () => {},
    };
    for (let attempt = 1; attempt <= 3; attempt++) {
      // A hand-made batch records the retry delay, which getQueueResult does not report.
      const outcome: { acked: boolean; retry?: QueueRetryOptions } = { acked: false };
      const message = {
        id: `flaky-${attempt}`,
        timestamp: new Date(),
        attempts: attempt,
        body: msg,
        ack: () => {
          outcome.acked = true;
        },
        retry: (o?: QueueRetryOptions) => {
          outcome.retry = o ?? {};
        },
      } as unknown as Message;
      await consumeOrders({ queue: "breakwater-orders", messages: [message], ackAll() {}, retryAll() {} } as unknown as MessageBatch, deps);
      if (attempt < 3) {
        expect(outcome.acked).toBe(false);
        expect(outcome.retry?.delaySeconds).toBeGreaterThanOrEqual(1);
      } else {
        expect(outcome).toEqual({ acked: true });
      }
    }
    expect(Object.values(await rowsPerShard(msg.orderId)).reduce((a, b) => a + b, 0)).toBe(1);
  });

  it("acknowledges an invalid message and records it as a dead letter", async () => {
    const batch = batchOf("breakwater-orders", [{ kind: "order.paid", orderId: "x" }]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toHaveLength(1);
    const row = await env.CATALOG_DB.prepare("SELECT queue, status, last_error FROM dead_letters WHERE id = ?")
      .bind(`breakwater-orders:${batch.messages[0]?.id}`)
      .first<{ queue: string; status: string; last_error: string }>();
    expect(row).toMatchObject({ queue: "breakwater-orders", status: "dead" });
    expect(row?.last_error).toContain("invalid message");
  });
});

describe("dead letters", () => {
  it("a message that kept failing lands in the DLQ, shows in the admin route, and a replay stores it once", async () => {
    const msg = orderMsg("dlq-buyer", 300);
    // Queues moved it to the DLQ after max_retries; the DLQ consumer records it.
    const batch = batchOf("breakwater-orders-dlq", [msg]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toHaveLength(1);
    expect(Object.values(await rowsPerShard(msg.orderId)).reduce((a, b) => a + b, 0)).toBe(0);

    const admin = await tokenFor("ops-admin", "admin");
    const list = await call("/v1/admin/dead-letters?queue=breakwater-orders&status=dead", { token: admin });
    expect(list.status).toBe(200);
    const { deadLetters } = (await list.json()) as { deadLetters: { id: string; body: { orderId: string } }[] };
    const dl = deadLetters.find((d) => d.body.orderId === msg.orderId);
    expect(dl).toBeDefined();
    expect((await call("/v1/admin/dead-letters", { token: await tokenFor("b", "buyer") })).status).toBe(403);
    expect((await call("/v1/admin/dead-letters/replay", { method: "POST", token: admin, json: {} })).status).toBe(400);

    const replay = await call("/v1/admin/dead-letters/replay", { method: "POST", token: admin, json: { ids: [dl?.id] } });
    expect(replay.status).toBe(200);
    expect(((await replay.json()) as { replayed: string[] }).replayed).toEqual([dl?.id]);
    // The replayed message goes through the real queue to the orders consumer.
    await eventually(async () => Object.values(await rowsPerShard(msg.orderId)).reduce((a, b) => a + b, 0) === 1);
    const again = await call("/v1/admin/dead-letters/replay", { method: "POST", token: admin, json: { ids: [dl?.id] } });
    expect(((await again.json()) as { replayed: string[] }).replayed).toEqual([]);
    await new Promise((r) => setTimeout(r, 500));
    expect(Object.values(await rowsPerShard(msg.orderId)).reduce((a, b) => a + b, 0)).toBe(1);
  });
});

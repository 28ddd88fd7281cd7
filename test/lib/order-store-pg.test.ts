import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { OrderStore } from "../../lib/order-store";
import { PgOrderStore } from "../../lib/order-store-pg";
import { shardFor } from "../../lib/shards";
import { consumeOrders } from "../../queues/orders";
import { orderMsg } from "../queues/helpers";
import type { PgShardsInfo } from "../setup/postgres";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_PG: PgShardsInfo;
    }
  }
}

const SHARDS = ["PG_0", "PG_1"];
const urls = env.TEST_PG.urls;
const stores = new Map<string, PgOrderStore>(SHARDS.map((s, i) => [s, PgOrderStore.connect(s, urls[i] as string, 2)]));
const store = (s: string): OrderStore => stores.get(s) as PgOrderStore;

const count = async (shard: string, orderId: string) => {
  const client = (stores.get(shard) as PgOrderStore).client;
  const [row] = await client`SELECT count(*)::int AS n FROM orders WHERE id = ${orderId}`;
  return (row?.n as number | undefined) ?? 0;
};

describe("PostgreSQL order shards (real server, two databases)", () => {
  it("stores an order and its tickets once; a replay changes nothing; reads it back", async () => {
    const msg = orderMsg("pg-buyer-1", 1);
    expect(await store("PG_0").saveOrder(msg)).toBe("inserted");
    expect(await store("PG_0").saveOrder(msg)).toBe("exists");
    const got = await store("PG_0").getOrder(msg.orderId);
    expect(got).toMatchObject({
      id: msg.orderId,
      total: 9000,
      currency: "EUR",
      seats: [],
      tickets: [{ id: "tkt_1_1" }, { id: "tkt_1_2" }],
    });
    expect(await count("PG_0", msg.orderId)).toBe(1);
    expect(await store("PG_0").recordMail({ orderId: msg.orderId, userId: msg.userId, subject: "s", body: "b" })).toBe("sent");
    expect(await store("PG_0").recordMail({ orderId: msg.orderId, userId: msg.userId, subject: "s", body: "b" })).toBe("already_sent");
  });

  it("the orders consumer puts every paid order in exactly the buyer's shard, even when replayed", async () => {
    const msgs = Array.from({ length: 16 }, (_, i) => orderMsg(`pg-consumer-${i}`, 100 + i));
    for (let round = 0; round < 2; round++) {
      const batch = createMessageBatch(
        "breakwater-orders",
        msgs.map((body, i) => ({ id: `pg-${round}-${i}`, timestamp: new Date(), attempts: 1, body })),
      );
      const ctx = createExecutionContext();
      await consumeOrders(batch, {
        shards: SHARDS,
        store,
        notifications: env.NOTIFICATIONS_QUEUE,
        analytics: env.ANALYTICS_QUEUE,
        deadLetter: async () => {},
      });
      const result = await getQueueResult(batch, ctx);
      expect(result.explicitAcks).toHaveLength(msgs.length);
    }
    for (const m of msgs) {
      const owner = shardFor(m.userId, SHARDS);
      expect(await count(owner, m.orderId)).toBe(1);
      expect(await count(owner === "PG_0" ? "PG_1" : "PG_0", m.orderId)).toBe(0);
    }
    const mine = await store(shardFor("pg-consumer-3", SHARDS)).listOrders("pg-consumer-3", 10);
    expect(mine.map((o) => o.id)).toEqual([msgs[3]?.orderId]);
  });

  it("retries while a shard is unreachable and stores exactly once after it recovers", async () => {
    const msg = orderMsg("pg-flaky", 500);
    const owner = shardFor(msg.userId, SHARDS);
    const down = PgOrderStore.connect(owner, "postgres://postgres@127.0.0.1:1/nowhere");
    const outcomes: string[] = [];
    for (const attempt of [1, 2]) {
      const message = {
        id: `flaky-${attempt}`,
        timestamp: new Date(),
        attempts: attempt,
        body: msg,
        ack: () => outcomes.push("ack"),
        retry: () => outcomes.push("retry"),
      } as unknown as Message;
      await consumeOrders({ queue: "breakwater-orders", messages: [message], ackAll() {}, retryAll() {} } as unknown as MessageBatch, {
        shards: SHARDS,
        store: (s) => (attempt === 1 && s === owner ? down : store(s)),
        notifications: env.NOTIFICATIONS_QUEUE,
        analytics: env.ANALYTICS_QUEUE,
        deadLetter: async () => {},
      });
    }
    expect(outcomes).toEqual(["retry", "ack"]);
    expect(await count(owner, msg.orderId)).toBe(1);
  });
});

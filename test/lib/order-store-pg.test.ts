import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { OrderStore } from "../../lib/order-rows";
import { D1OrderStore } from "../../lib/order-store";
import { PgOrderStore } from "../../lib/order-store-pg";
import { shardFor } from "../../lib/shards";
import { handleQueue } from "../../queues";
import { consumeOrders } from "../../queues/orders";
import { freshTag, orderMsg, recordingBatch, recordingQueue } from "../queues/helpers";
import type { PgShardsInfo } from "../setup/postgres";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_PG: PgShardsInfo;
    }
  }
}

/**
 * The Postgres backend inside workerd (postgres.js over `cloudflare:sockets`, nodejs_compat) against the
 * real local PostgreSQL: two databases as two shards, migrations/pg applied by test/setup/postgres.ts in
 * a schema of this run's own.
 */
const SHARDS = ["SHARD_0", "SHARD_1"];
const urls = env.TEST_PG.urls;
const stores = new Map<string, PgOrderStore>(SHARDS.map((s, i) => [s, PgOrderStore.connect(s, urls[i] as string, 2)]));
const store = (s: string): OrderStore => stores.get(s) as PgOrderStore;
/** The Worker's env with the Postgres backend selected (connection strings as in local runs). */
const pgEnv = { ...env, SHARD_BACKEND: "postgres", PG_SHARD_URLS: urls.join(",") };

const count = async (shard: string, orderId: string, table: "orders" | "mail_outbox" = "orders") => {
  const client = (stores.get(shard) as PgOrderStore).client;
  const [row] = await client.unsafe(`SELECT count(*)::int AS n FROM ${table} WHERE ${table === "orders" ? "id" : "order_id"} = $1`, [
    orderId,
  ]);
  return (row?.n as number | undefined) ?? 0;
};

describe("PostgreSQL order shards (real server, two databases)", () => {
  it("stores an order and its tickets once; a replay changes nothing; reads back the same document as D1", async () => {
    const tag = freshTag();
    const msg = orderMsg(`${tag}-pg-buyer`, 1, { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }, tag);
    expect(await store("SHARD_0").saveOrder(msg)).toBe("inserted");
    expect(await store("SHARD_0").saveOrder(msg)).toBe("exists");
    expect(await count("SHARD_0", msg.orderId)).toBe(1);
    const d1 = new D1OrderStore("SHARD_0", env.SHARD_0);
    await d1.saveOrder(msg);
    const fromPg = await store("SHARD_0").getOrder(msg.orderId);
    expect(fromPg).toEqual(await d1.getOrder(msg.orderId));
    expect(fromPg).toMatchObject({ id: msg.orderId, status: "paid", total: 9000, seats: [], tickets: msg.tickets, createdAt: msg.paidAt });
    expect(await store("SHARD_0").getOrder("ord_missing")).toBeNull();
  });

  it("stores a large order whole and lists a buyer's orders newest first", async () => {
    const tag = freshTag();
    const seats = Array.from({ length: 60 }, (_, i) => `a/${i + 1}`);
    const big = orderMsg(
      `${tag}-me`,
      5,
      { seats, quantity: 60, tickets: seats.map((seat, i) => ({ id: `tkt_${tag}_${i}`, seat, code: "c" })) },
      tag,
    );
    const older = orderMsg(`${tag}-me`, 9, {}, tag);
    await store("SHARD_1").saveOrder(older);
    await store("SHARD_1").saveOrder(big);
    await store("SHARD_1").saveOrder(orderMsg(`${tag}-other`, 1, {}, tag));
    const list = await store("SHARD_1").listOrders(`${tag}-me`, 10);
    expect(list.map((o) => o.id)).toEqual([big.orderId, older.orderId]);
    expect(list[0]?.tickets).toHaveLength(60);
    expect((await store("SHARD_1").listOrders(`${tag}-me`, 1)).map((o) => o.id)).toEqual([big.orderId]);
  });

  it("counts orders and pages through their ids (reconciliation)", async () => {
    const tag = freshTag();
    const s = store("SHARD_1");
    const before = await s.countOrders();
    const msgs = Array.from({ length: 5 }, (_, i) => orderMsg(`${tag}-r${i}`, i + 1, {}, tag));
    for (const m of msgs) await s.saveOrder(m);
    expect(await s.countOrders()).toBe(before + 5);
    const all = await s.allOrderIds();
    for (const m of msgs) expect(all).toContain(m.orderId);
    const paged: string[] = [];
    for (let page = await s.allOrderIds({ limit: 3 }); page.length; page = await s.allOrderIds({ after: page.at(-1) as string, limit: 3 }))
      paged.push(...page);
    expect(paged).toEqual(all);
    expect(await s.orderIdsForEvent(msgs[0]?.eventId as string)).toEqual(
      expect.arrayContaining(msgs.map((m) => ({ id: m.orderId, rows: 1 }))),
    );
  });

  it("the queue handler with SHARD_BACKEND=postgres puts every paid order in exactly its buyer's shard, even when replayed", async () => {
    const tag = freshTag();
    const msgs = Array.from({ length: 16 }, (_, i) => orderMsg(`${tag}-pg-consumer-${i}`, 100 + i, {}, tag));
    for (let round = 0; round < 2; round++) {
      const batch = createMessageBatch(
        "breakwater-orders",
        msgs.map((body, i) => ({ id: `pg-${tag}-${round}-${i}`, timestamp: new Date(), attempts: 1, body })),
      );
      const ctx = createExecutionContext();
      await handleQueue(batch, pgEnv, ctx);
      const result = await getQueueResult(batch, ctx);
      expect(result.explicitAcks).toHaveLength(msgs.length);
      expect(result.retryMessages).toEqual([]);
    }
    expect(new Set(msgs.map((m) => shardFor(m.userId, SHARDS))).size).toBe(2);
    for (const m of msgs) {
      const owner = shardFor(m.userId, SHARDS);
      expect(await count(owner, m.orderId)).toBe(1);
      expect(await count(owner === "SHARD_0" ? "SHARD_1" : "SHARD_0", m.orderId)).toBe(0);
      // Nothing went to the D1 shards.
      expect(await new D1OrderStore(owner, env[owner as "SHARD_0"]).getOrder(m.orderId)).toBeNull();
    }
    const me = msgs[3] as (typeof msgs)[number];
    expect((await store(shardFor(me.userId, SHARDS)).listOrders(me.userId, 10)).map((o) => o.id)).toEqual([me.orderId]);
  });

  it("the notifications consumer writes the confirmation to the buyer's Postgres shard outbox once", async () => {
    const orderId = `ord_pgmail_${freshTag()}`;
    const note = {
      v: 1,
      kind: "order.confirmation",
      orderId,
      userId: "u",
      eventId: "evt_x",
      shard: "SHARD_1",
      total: 1,
      currency: "EUR",
      tickets: 1,
    };
    for (const id of ["a", "b"]) {
      const batch = createMessageBatch("breakwater-notifications", [
        { id: `${orderId}-${id}`, timestamp: new Date(), attempts: 1, body: note },
      ]);
      const ctx = createExecutionContext();
      await handleQueue(batch, pgEnv, ctx);
      expect((await getQueueResult(batch, ctx)).explicitAcks).toHaveLength(1);
    }
    expect(await count("SHARD_1", orderId, "mail_outbox")).toBe(1);
    expect(await count("SHARD_0", orderId, "mail_outbox")).toBe(0);
    // One batch carrying the confirmation twice (a duplicate delivery): one statement, one row, both acknowledged.
    const again = `ord_pgmail_${freshTag()}`;
    const twice = createMessageBatch(
      "breakwater-notifications",
      ["a", "b"].map((id) => ({ id: `${again}-${id}`, timestamp: new Date(), attempts: 1, body: { ...note, orderId: again } })),
    );
    const ctx = createExecutionContext();
    await handleQueue(twice, pgEnv, ctx);
    expect((await getQueueResult(twice, ctx)).explicitAcks).toHaveLength(2);
    expect(await count("SHARD_1", again, "mail_outbox")).toBe(1);
  });

  it("retries while a shard is unreachable and stores exactly once after it recovers", async () => {
    const msg = orderMsg(`${freshTag()}-pg-flaky`, 500);
    const owner = shardFor(msg.userId, SHARDS);
    const down = PgOrderStore.connect(owner, "postgres://postgres@127.0.0.1:1/nowhere");
    const outcomes: string[] = [];
    for (const attempt of [1, 2]) {
      const { batch, outcomes: o } = recordingBatch("breakwater-orders", [msg], attempt);
      await consumeOrders(batch, {
        shards: SHARDS,
        store: (s) => (attempt === 1 && s === owner ? down : store(s)),
        notifications: recordingQueue(),
        analytics: recordingQueue(),
        deadLetter: async () => {},
        confirmStored: async () => {},
      });
      outcomes.push(o[0]?.acked ? "ack" : o[0]?.retry ? "retry" : "none");
      expect(await count(owner, msg.orderId)).toBe(attempt === 1 ? 0 : 1);
    }
    expect(outcomes).toEqual(["retry", "ack"]);
  });
});

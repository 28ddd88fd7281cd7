import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { D1OrderStore, orderStores } from "../../lib/order-store";
import { PgOrderStore } from "../../lib/order-store-pg";
import { freshTag, orderMsg } from "../queues/helpers";

const store = new D1OrderStore("SHARD_0", env.SHARD_0);

describe("D1OrderStore", () => {
  it("stores a consumer batch in one call: each order new or already there, tickets included, all in one write", async () => {
    const tag = freshTag();
    // 60 orders (more than one D1 batch of 50), one stored before, one with 45 tickets (3 ticket statements).
    const manyTickets = (n: number) =>
      Array.from({ length: 45 }, (_, t) => ({ id: `tkt_${tag}${n}_${t}`, seat: `floor/GA-${t + 1}`, code: `c${t}` }));
    const msgs = Array.from({ length: 60 }, (_, i) =>
      orderMsg(`${tag}-buyer-${i}`, 1000 + i, i === 7 ? { tickets: manyTickets(1000 + i), quantity: 45 } : {}, tag),
    );
    expect(await store.saveOrder(msgs[3] as (typeof msgs)[number])).toBe("inserted");
    const results = await store.saveOrders(msgs);
    expect(results).toEqual(msgs.map((_, i) => (i === 3 ? "exists" : "inserted")));
    expect(await store.saveOrders(msgs)).toEqual(msgs.map(() => "exists"));
    for (const m of [msgs[0], msgs[7], msgs[59]]) {
      const stored = await store.getOrder(m?.orderId as string);
      expect(stored?.tickets.map((t) => t.id)).toEqual(m?.tickets.map((t) => t.id));
    }
  });

  it("counts an order given twice in one call as new once (a redelivered message in the same batch)", async () => {
    const tag = freshTag();
    const a = orderMsg(`${tag}-a`, 1, {}, tag);
    const b = orderMsg(`${tag}-b`, 2, {}, tag);
    expect(await store.saveOrders([a, b, a])).toEqual(["inserted", "inserted", "exists"]);
    const n = await env.SHARD_0.prepare("SELECT count(*) AS n FROM tickets WHERE order_id IN (?, ?)")
      .bind(a.orderId, b.orderId)
      .first<{ n: number }>();
    expect(n?.n).toBe(a.tickets.length + b.tickets.length);
  });

  it("stores an order and its tickets in one batch; a replay changes nothing; reads it back as the API's order", async () => {
    const tag = freshTag();
    const msg = orderMsg(`${tag}-buyer`, 1, { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }, tag);
    expect(await store.saveOrder(msg)).toBe("inserted");
    expect(await store.saveOrder(msg)).toBe("exists");
    expect(await store.getOrder(msg.orderId)).toEqual({
      id: msg.orderId,
      status: "paid",
      eventId: msg.eventId,
      sectionId: "floor",
      holdId: msg.holdId,
      seats: [],
      quantity: 2,
      total: 9000,
      currency: "EUR",
      // The shard does not see ticket marks: every ticket reads as issued (GET /v1/orders overlays the live status).
      tickets: msg.tickets.map((t) => ({ ...t, status: "valid" })),
      createdAt: msg.paidAt,
    });
    const rows = await env.SHARD_0.prepare("SELECT trace_id, charge_id, payment_provider FROM orders WHERE id = ?").bind(msg.orderId).all();
    expect(rows.results).toEqual([{ trace_id: "0af7651916cd43dd8448eb211c80319c", charge_id: `ch_${tag}1`, payment_provider: "sandbox" }]);
    const tickets = await env.SHARD_0.prepare("SELECT count(*) AS n FROM tickets WHERE order_id = ?")
      .bind(msg.orderId)
      .first<{ n: number }>();
    expect(tickets?.n).toBe(2);
    expect(await store.getOrder("ord_missing")).toBeNull();
  });

  it("stores a large order whole (more ticket rows than D1 binds in one statement)", async () => {
    const tag = freshTag();
    const seats = Array.from({ length: 60 }, (_, i) => `a/${Math.floor(i / 10) + 1}-${(i % 10) + 1}`);
    const msg = orderMsg(
      `${tag}-big`,
      2,
      { seats, quantity: 60, tickets: seats.map((seat, i) => ({ id: `tkt_${tag}_big_${i + 1}`, seat, code: `code-${i}` })) },
      tag,
    );
    expect(await store.saveOrder(msg)).toBe("inserted");
    const got = await store.getOrder(msg.orderId);
    expect(got?.tickets).toHaveLength(60);
    expect(got?.tickets.map((t) => t.seat)).toEqual(seats);
    expect(await store.saveOrder(msg)).toBe("exists");
    const n = await env.SHARD_0.prepare("SELECT count(*) AS n FROM tickets WHERE order_id = ?").bind(msg.orderId).first<{ n: number }>();
    expect(n?.n).toBe(60);
  });

  it("lists a buyer's orders newest first, only theirs, up to the limit", async () => {
    const tag = freshTag();
    const mine = [3, 1, 2].map((n) => orderMsg(`${tag}-me`, n, {}, tag)); // paidAt = now - n s
    for (const m of mine) await store.saveOrder(m);
    await store.saveOrder(orderMsg(`${tag}-other`, 4, {}, tag));
    const list = await store.listOrders(`${tag}-me`, 10);
    expect(list.map((o) => o.id)).toEqual([1, 2, 3].map((n) => orderMsg("", n, {}, tag).orderId));
    expect((await store.listOrders(`${tag}-me`, 2)).map((o) => o.id)).toEqual(list.slice(0, 2).map((o) => o.id));
    expect(await store.listOrders(`${tag}-nobody`, 10)).toEqual([]);
  });

  it("counts orders and lists their ids in pages (reconciliation)", async () => {
    const d1 = new D1OrderStore("SHARD_3", env.SHARD_3);
    const before = await d1.countOrders();
    const tag = freshTag();
    const msgs = Array.from({ length: 5 }, (_, i) => orderMsg(`${tag}-r${i}`, i + 1, {}, tag));
    for (const m of msgs) await d1.saveOrder(m);
    await d1.saveOrder(msgs[0] as (typeof msgs)[number]);
    expect(await d1.countOrders()).toBe(before + 5);
    const all = await d1.allOrderIds();
    expect(all).toEqual([...all].sort());
    for (const m of msgs) expect(all).toContain(m.orderId);
    const pages: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await d1.allOrderIds({ ...(after ? { after } : {}), limit: 2 });
      if (!page.length) break;
      expect(page.length).toBeLessThanOrEqual(2);
      pages.push(...page);
      after = page.at(-1);
    }
    expect(pages).toEqual(all);
    expect(await d1.orderIdsForEvent(msgs[0]?.eventId as string)).toEqual(
      expect.arrayContaining(msgs.map((m) => ({ id: m.orderId, rows: 1 }))),
    );
  });

  it("records a confirmation in the mail outbox once per order", async () => {
    const mail = { orderId: `ord_mail_${freshTag()}`, userId: "u", subject: "s", body: "b" };
    expect(await store.recordMail(mail)).toBe("sent");
    expect(await store.recordMail(mail)).toBe("already_sent");
  });

  it("records a batch of confirmations in one call: each once, more than one statement's worth, repeats already sent", async () => {
    const tag = freshTag();
    const mails = Array.from({ length: 40 }, (_, i) => ({
      orderId: `ord_mails_${tag}_${i}`,
      userId: `u${i}`,
      subject: "s",
      body: `b${i}`,
    }));
    expect(await store.recordMail(mails[3] as (typeof mails)[number])).toBe("sent");
    const answers = await store.recordMails(mails);
    expect(answers.filter((a) => a === "sent")).toHaveLength(39);
    expect(answers[3]).toBe("already_sent");
    expect(await store.recordMails(mails)).toEqual(mails.map(() => "already_sent"));
    expect(await store.recordMails([])).toEqual([]);
  });
});

describe("orderStores (backend selection)", () => {
  it("D1 by default: each shard name is a D1 binding; a name that is not one is refused", () => {
    const stores = orderStores(env);
    expect(stores("SHARD_1")).toBeInstanceOf(D1OrderStore);
    expect(stores("SHARD_1").name).toBe("SHARD_1");
    expect(stores("SHARD_1")).toBe(stores("SHARD_1"));
    expect(() => stores("CATALOG_KV")).toThrow("not a D1 binding");
    expect(() => stores("NOPE")).toThrow("not a D1 binding");
  });

  it("Postgres: a Hyperdrive binding named like the shard, else PG_SHARD_URLS by position; none is an error", async () => {
    const stores = orderStores({
      ...env,
      SHARD_BACKEND: "postgres",
      ORDER_SHARDS: "PG_A,PG_B,PG_C",
      PG_SHARD_URLS: "postgres://u@127.0.0.1:1/a,postgres://u@127.0.0.1:1/b",
      PG_A: { connectionString: "postgres://hyperdrive@127.0.0.1:1/a" },
    } as typeof env);
    const a = stores("PG_A");
    expect(a).toBeInstanceOf(PgOrderStore);
    expect((a as PgOrderStore).client.options.user).toBe("hyperdrive");
    expect((stores("PG_B") as PgOrderStore).client.options.database).toBe("b");
    expect(stores("PG_B")).toBe(stores("PG_B"));
    expect(() => stores("PG_C")).toThrow("no Postgres connection for shard PG_C");
    await stores.close();
  });

  it("refuses an unknown backend instead of writing orders elsewhere", () => {
    expect(() => orderStores({ ...env, SHARD_BACKEND: "postgress" })).toThrow(
      /SHARD_BACKEND: Invalid option: expected one of "d1"\|"postgres"/,
    );
    expect(orderStores({ ...env, SHARD_BACKEND: "" })("SHARD_0")).toBeInstanceOf(D1OrderStore);
  });
});

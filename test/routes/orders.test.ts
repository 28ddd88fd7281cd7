import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseLocatedId } from "../../lib/hold-id";
import { inventoryStub, limitStub } from "../../lib/holds";
import { resetBreakers, resetSandbox, sandboxLedger } from "../../lib/payments";
import { shardFor } from "../../lib/shards";
import { verifyPayload } from "../../lib/signing";
import { verifyTicketCode } from "../../lib/tickets";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";
import { expectInventoryInvariants } from "../inventory-helpers";
import { eventually } from "../queues/helpers";

interface OrderBody {
  id: string;
  status: string;
  eventId: string;
  seats: string[];
  total: number;
  currency: string;
  tickets: { id: string; seat: string; code: string }[];
}

let organizer: string;
let ev: EventBody;
beforeAll(async () => {
  organizer = await tokenFor("org-orders", "organizer");
  ev = await createEvent(organizer, { perCustomerLimit: 10 });
});
beforeEach(() => {
  resetSandbox();
  resetBreakers();
});

async function holdFor(token: string, body: unknown = { sectionId: "floor", quantity: 2 }): Promise<string> {
  const res = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: body });
  expect(res.status).toBe(201);
  return ((await res.json()) as { hold: { id: string } }).hold.id;
}
const pay = (token: string, holdId: string, tok = "tok_ok", headers: Record<string, string> = {}) =>
  call("/v1/orders", { method: "POST", token, json: { holdId, payment: { method: "sandbox", token: tok } }, headers });

describe("POST /v1/orders (happy)", () => {
  it("answers 201 with the paid order and signed tickets, readable at once", async () => {
    const t = await tokenFor("ord-1", "buyer");
    const holdId = await holdFor(t, { sectionId: "a", seats: ["1-1", "1-2"] });
    const res = await pay(t, holdId);
    expect(res.status).toBe(201);
    const { order } = (await res.json()) as { order: OrderBody };
    expect(order).toMatchObject({ status: "paid", eventId: ev.id, seats: ["1-1", "1-2"], total: 16_000, currency: "EUR" });
    expect(order.tickets.map((x) => x.seat)).toEqual(["1-1", "1-2"]);
    const claims = await verifyTicketCode(env.SIGNING_SECRET, order.tickets[0]?.code ?? "");
    expect(claims).toEqual({ t: order.tickets[0]?.id, o: order.id, e: ev.id, s: "1-1" });
    expect(await verifyPayload(env.SIGNING_SECRET, "queue-pass", order.tickets[0]?.code ?? "")).toBeNull();

    const read = await call(`/v1/orders/${order.id}`, { token: t });
    expect(read.status).toBe(200);
    expect(((await read.json()) as { order: OrderBody }).order).toEqual(order);
    const hold = (await (await call(`/v1/holds/${holdId}`, { token: t })).json()) as { hold: { status: string; orderId: string } };
    expect(hold.hold).toMatchObject({ status: "sold", orderId: order.id });
    const totals = await expectInventoryInvariants(ev);
    expect(totals.a?.sold).toBeGreaterThanOrEqual(2);
  });
});

describe("POST /v1/orders (errors)", () => {
  it("answers 402 on a decline and keeps the hold", async () => {
    const t = await tokenFor("ord-2", "buyer");
    const holdId = await holdFor(t);
    const res = await pay(t, holdId, "tok_decline");
    expect(res.status).toBe(402);
    expect(((await res.json()) as Problem).code).toBe("payment_declined");
    expect(((await (await call(`/v1/holds/${holdId}`, { token: t })).json()) as { hold: { status: string } }).hold.status).toBe("active");
  });

  it("answers 503 with Retry-After on a provider outage and charges nothing", async () => {
    const t = await tokenFor("ord-3", "buyer");
    const res = await pay(t, await holdFor(t), "tok_error");
    expect(res.status).toBe(503);
    expect(res.headers.get("Retry-After")).toMatch(/^\d+$/);
    expect(sandboxLedger().filter((c) => c.status === "succeeded")).toEqual([]);
  });

  it("refuses someone else's hold, unknown holds, bad bodies and unknown methods", async () => {
    const owner = await tokenFor("ord-4", "buyer");
    const holdId = await holdFor(owner);
    const thief = await tokenFor("ord-thief", "buyer");
    const codeOf = async (res: Response) => [res.status, ((await res.json()) as Problem).code];
    expect(await codeOf(await pay(thief, holdId))).toEqual([404, "not_found"]);
    expect(await codeOf(await pay(owner, "hld_nope"))).toEqual([404, "not_found"]);
    const bad = await call("/v1/orders", { method: "POST", token: owner, json: { holdId, payment: { method: "sandbox" } } });
    expect(await codeOf(bad)).toEqual([400, "validation_failed"]);
    const method = await call("/v1/orders", { method: "POST", token: owner, json: { holdId, payment: { method: "bitcoin", token: "x" } } });
    expect(await codeOf(method)).toEqual([400, "validation_failed"]);
    expect(sandboxLedger()).toEqual([]);
    // The hold is still the owner's, untouched by the thief's try.
    expect(((await (await call(`/v1/holds/${holdId}`, { token: owner })).json()) as { hold: { status: string } }).hold.status).toBe(
      "active",
    );
  });

  it("shows a real, paid order only to its owner", async () => {
    const owner = await tokenFor("ord-owner", "buyer");
    const paid = await pay(owner, await holdFor(owner));
    expect(paid.status).toBe(201);
    const { order } = (await paid.json()) as { order: OrderBody };
    const thief = await tokenFor("ord-reader", "buyer");
    const stolen = await call(`/v1/orders/${order.id}`, { token: thief });
    expect([stolen.status, ((await stolen.json()) as Problem).code]).toEqual([404, "not_found"]);
    const own = await call(`/v1/orders/${order.id}`, { token: owner });
    expect(own.status).toBe(200);
    expect(((await own.json()) as { order: OrderBody }).order.id).toBe(order.id);
  });
});

describe("per-customer limit after a sale", () => {
  it("counts sold places: hold, pay, then a hold past the limit is 422 limit_exceeded", async () => {
    const limited = await createEvent(organizer, { perCustomerLimit: 2 });
    const user = "ord-limit";
    const t = await tokenFor(user, "buyer");
    const held = await call(`/v1/events/${limited.id}/holds`, { method: "POST", token: t, json: { sectionId: "floor", quantity: 2 } });
    expect(held.status).toBe(201);
    const holdId = ((await held.json()) as { hold: { id: string } }).hold.id;
    expect((await pay(t, holdId)).status).toBe(201);
    // Wait until the ledger has the sale (not just the checkout), then try one more place.
    const ledger = limitStub(env.LIMIT_LEDGER, limited, user);
    await eventually(async () =>
      runInDurableObject(ledger, (_l, state) =>
        state.storage.sql
          .exec<{ state: string }>("SELECT state FROM reservations WHERE hold_id = ?", holdId)
          .toArray()
          .some((r) => r.state === "sold"),
      ),
    );
    const more = await call(`/v1/events/${limited.id}/holds`, { method: "POST", token: t, json: { sectionId: "floor", quantity: 1 } });
    expect([more.status, ((await more.json()) as Problem).code]).toEqual([422, "limit_exceeded"]);
  });
});

describe("Idempotency-Key on orders", () => {
  it("replays the order, refuses another body under the key, and charges once", async () => {
    const t = await tokenFor("ord-5", "buyer");
    const holdId = await holdFor(t);
    const first = await pay(t, holdId, "tok_ok", { "Idempotency-Key": "pay-1" });
    expect(first.status).toBe(201);
    const body = await first.text();
    const replay = await pay(t, holdId, "tok_ok", { "Idempotency-Key": "pay-1" });
    expect(replay.status).toBe(201);
    expect(replay.headers.get("Idempotency-Replayed")).toBe("true");
    expect(await replay.text()).toBe(body);
    const other = await pay(t, holdId, "tok_decline", { "Idempotency-Key": "pay-1" });
    expect(other.status).toBe(422);
    expect(sandboxLedger()).toHaveLength(1);
  });

  it("answers 409 to a concurrent duplicate while the first is paying", async () => {
    const t = await tokenFor("ord-6", "buyer");
    const holdId = await holdFor(t);
    const [a, b] = await Promise.all([
      pay(t, holdId, "tok_slow", { "Idempotency-Key": "pay-2" }),
      pay(t, holdId, "tok_slow", { "Idempotency-Key": "pay-2" }),
    ]);
    expect([a?.status, b?.status].sort()).toEqual([201, 409]);
    expect(sandboxLedger()).toHaveLength(1);
  });
});

describe("tracing", () => {
  it("continues the caller's trace and carries it into the order message", async () => {
    const t = await tokenFor("ord-trace", "buyer");
    const holdId = await holdFor(t);
    const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const res = await pay(t, holdId, "tok_ok", { traceparent: parent });
    expect(res.status).toBe(201);
    const echoed = res.headers.get("traceparent") ?? "";
    expect(echoed).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    expect(echoed).not.toBe(parent);
    const { order } = (await res.json()) as { order: OrderBody };
    const loc = parseLocatedId("ord", order.id);
    if (!loc) throw new Error("bad order id");
    const message = await runInDurableObject(
      inventoryStub(env.INVENTORY, loc),
      (_i, state) =>
        JSON.parse(state.storage.sql.exec<{ message: string }>("SELECT message FROM orders WHERE id = ?", order.id).one().message) as {
          traceparent?: string;
        },
    );
    expect(message.traceparent).toBe(echoed);
  });
});

describe("write-behind: every paid order reaches exactly one shard", () => {
  it("drains 10 checkouts into the buyers' shards, lists them newest first, and sends confirmations", async () => {
    const buyers = await Promise.all(Array.from({ length: 10 }, (_, i) => tokenFor(`wb-${i}`, "buyer")));
    const orderIds: string[] = [];
    for (const [i, t] of buyers.entries()) {
      const res = await pay(t, await holdFor(t, { sectionId: "floor", quantity: 1 }));
      expect(res.status, `buyer ${i}`).toBe(201);
      orderIds.push(((await res.json()) as { order: OrderBody }).order.id);
    }
    const rowsOf = async (id: string) => {
      const out: number[] = [];
      for (const s of ["SHARD_0", "SHARD_1"] as const)
        out.push((await env[s].prepare("SELECT count(*) AS n FROM orders WHERE id = ?").bind(id).first<{ n: number }>())?.n ?? 0);
      return out;
    };
    const deadline = Date.now() + 20_000;
    for (;;) {
      const counts = await Promise.all(orderIds.map(rowsOf));
      if (counts.every((c) => (c[0] ?? 0) + (c[1] ?? 0) === 1)) break;
      if (Date.now() > deadline) throw new Error(`queue did not drain: ${JSON.stringify(counts)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const [i, id] of orderIds.entries()) {
      const [s0, s1] = await rowsOf(id);
      expect(shardFor(`wb-${i}`, ["SHARD_0", "SHARD_1"])).toBe(s0 === 1 ? "SHARD_0" : "SHARD_1");
      expect((s0 ?? 0) + (s1 ?? 0)).toBe(1);
    }
    const list = await call("/v1/orders", { token: buyers[0] });
    expect(list.status).toBe(200);
    const { orders } = (await list.json()) as { orders: OrderBody[] };
    expect(orders.map((o) => o.id)).toEqual([orderIds[0]]);
    expect(orders[0]?.tickets).toHaveLength(1);
    // The confirmation reaches the buyer's mail outbox through the notifications queue.
    const shard = shardFor("wb-0", ["SHARD_0", "SHARD_1"]) as "SHARD_0";
    const deadline2 = Date.now() + 20_000;
    for (;;) {
      const mail = await env[shard]
        .prepare("SELECT sent_at FROM mail_outbox WHERE order_id = ?")
        .bind(orderIds[0])
        .first<{ sent_at: string }>();
      if (mail?.sent_at) break;
      if (Date.now() > deadline2) throw new Error("no confirmation mail");
      await new Promise((r) => setTimeout(r, 200));
    }
  });
});

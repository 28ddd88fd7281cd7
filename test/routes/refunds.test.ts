import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { clearFaults, setFault } from "../../lib/faults";
import { parseLocatedId } from "../../lib/hold-id";
import { inventoryStub } from "../../lib/holds";
import { resetBreakers, resetSandbox, sandboxLedger } from "../../lib/payments";
import { rollUp } from "../../lib/rollups";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";
import { expectInventoryInvariants } from "../inventory-helpers";
import { eventually } from "../queues/helpers";

interface TicketBody {
  id: string;
  seat: string;
  code: string;
  status?: string;
}
interface OrderBody {
  id: string;
  status: string;
  eventId: string;
  seats: string[];
  total: number;
  tickets: TicketBody[];
}

let organizer: string;
let ev: EventBody;
beforeAll(async () => {
  organizer = await tokenFor("org-refunds", "organizer");
  ev = await createEvent(organizer, { perCustomerLimit: 2 });
});
beforeEach(() => {
  resetSandbox();
  resetBreakers();
});

const hold = (token: string, body: unknown, eventId = ev.id) => call(`/v1/events/${eventId}/holds`, { method: "POST", token, json: body });

/** Holds `body` and pays it; returns the paid order. */
async function buy(token: string, body: unknown, eventId = ev.id): Promise<OrderBody> {
  const h = await hold(token, body, eventId);
  expect(h.status).toBe(201);
  const holdId = ((await h.json()) as { hold: { id: string } }).hold.id;
  const paid = await call("/v1/orders", { method: "POST", token, json: { holdId, payment: { method: "sandbox", token: "tok_ok" } } });
  expect(paid.status).toBe(201);
  return ((await paid.json()) as { order: OrderBody }).order;
}

/** Checks `Breakwater-Signature` independently of the code under test: HMAC-SHA256(secret, "t.body"), hex. */
async function signatureValid(header: string, body: string, secret: string): Promise<boolean> {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  const mac = Uint8Array.from((m[2] as string).match(/../g) ?? [], (h) => Number.parseInt(h, 16));
  return crypto.subtle.verify("HMAC", key, mac, new TextEncoder().encode(`${m[1]}.${body}`));
}

const refund = (orderId: string, body: unknown = {}, key?: string, token = organizer) =>
  call(`/v1/orders/${orderId}/refund`, { method: "POST", token, json: body, headers: key ? { "Idempotency-Key": key } : {} });

/** The seat map's status of `seat` (polled: the map is cached for a second). */
async function seatStatus(seat: string): Promise<string | undefined> {
  const map = (await (await call(`/v1/events/${ev.id}/sections/a/seats`)).json()) as { seats: { id: string; status: string }[] };
  return map.seats.find((s) => s.id === seat)?.status;
}

/** The charge the sandbox made for an order (its idempotency key is `<orderId>:<attempt>`). */
const chargeOf = (orderId: string) => sandboxLedger().find((c) => c.idempotencyKey.startsWith(`${orderId}:`));

describe("POST /v1/orders/:id/refund", () => {
  it("refunds a whole order: seats back on sale and sold again, the buyer may buy again, one provider refund, the shard follows", async () => {
    const first = await tokenFor("refund-buyer-1");
    const order = await buy(first, { sectionId: "a", seats: ["1-1", "1-2"] });
    // At the per-customer limit (2): no more holds for this buyer.
    const over = await hold(first, { sectionId: "a", seats: ["2-1"] });
    expect([over.status, ((await over.json()) as Problem).code]).toEqual([422, "limit_exceeded"]);

    const res = await refund(order.id, { reason: "changed plans" }, "refund-key-1");
    expect(res.status).toBe(200);
    const body = await res.text();
    const refunded = (JSON.parse(body) as { order: OrderBody }).order;
    expect(refunded.status).toBe("refunded");
    expect(refunded.tickets.map((t) => t.status)).toEqual(["void", "void"]);
    // The same Idempotency-Key answers the same refund, and refunds nothing more.
    const again = await refund(order.id, { reason: "changed plans" }, "refund-key-1");
    expect(again.status).toBe(200);
    expect(await again.text()).toBe(body);
    // Another refund of the void tickets is refused.
    const twice = await refund(order.id, {}, "refund-key-2");
    expect([twice.status, ((await twice.json()) as Problem).code]).toEqual([409, "not_refundable"]);

    // The provider refunded the charge exactly once, in full.
    const charge = chargeOf(order.id);
    expect(charge?.status).toBe("refunded");
    expect(charge?.refunds?.map((r) => r.amount)).toEqual([order.total]);

    // The buyer sees it at once.
    const read = (await (await call(`/v1/orders/${order.id}`, { token: first })).json()) as { order: OrderBody };
    expect(read.order.status).toBe("refunded");

    // The seats are on sale again (seat map and availability) and another buyer buys one.
    await eventually(async () => (await seatStatus("1-1")) === "available");
    const second = await tokenFor("refund-buyer-2");
    const resold = await buy(second, { sectionId: "a", seats: ["1-1"] });
    expect(resold.seats).toEqual(["1-1"]);
    // The first buyer's ledger counts nothing any more: two places again.
    const rebuy = await buy(first, { sectionId: "a", seats: ["1-2", "2-1"] });
    expect(rebuy.seats).toEqual(["1-2", "2-1"]);

    const totals = await expectInventoryInvariants(ev);
    expect(totals.a?.sold).toBe(3);
    await eventually(async () => {
      const a = (await (await call(`/v1/events/${ev.id}/availability`)).json()) as { sections: { id: string; sold: number }[] };
      return a.sections.find((s) => s.id === "a")?.sold === 3;
    });

    // The buyer's order shard follows through the orders queue (its ticket rows become void).
    const shardTickets = async () => {
      const out: string[] = [];
      for (const shard of [env.SHARD_0, env.SHARD_1])
        for (const r of (await shard.prepare("SELECT status FROM tickets WHERE order_id = ?").bind(order.id).all<{ status: string }>())
          .results)
          out.push(r.status);
      return out;
    };
    await eventually(async () => (await shardTickets()).join() === "void,void");
    const list = (await (await call("/v1/orders", { token: first })).json()) as { orders: OrderBody[] };
    expect(list.orders.find((o) => o.id === order.id)?.status).toBe("refunded");
  });

  it("refunds some tickets: partially_refunded, one void; a void ticket again is 409; the provider refunded that part once", async () => {
    const buyer = await tokenFor("refund-buyer-3");
    const order = await buy(buyer, { sectionId: "floor", quantity: 2 });
    const [one, two] = order.tickets as [TicketBody, TicketBody];
    const res = await refund(order.id, { tickets: [one.id] }, "partial-1");
    expect(res.status).toBe(200);
    const partial = ((await res.json()) as { order: OrderBody }).order;
    expect(partial.status).toBe("partially_refunded");
    expect(partial.tickets.map((t) => [t.id, t.status])).toEqual([
      [one.id, "void"],
      [two.id, "valid"],
    ]);
    for (const [body, key] of [
      [{ tickets: [one.id] }, "partial-2"],
      [{}, "partial-3"],
    ] as const) {
      const again = await refund(order.id, body, key);
      expect([again.status, ((await again.json()) as Problem).code]).toEqual([409, "not_refundable"]);
    }
    const charge = chargeOf(order.id);
    expect(charge?.status).toBe("succeeded");
    expect(charge?.refunds?.map((r) => r.amount)).toEqual([order.total / 2]);

    // The rest: refunded in full, the second half refunded once more.
    const rest = await refund(order.id, { tickets: [two.id] }, "partial-4");
    expect(((await rest.json()) as { order: OrderBody }).order.status).toBe("refunded");
    expect(chargeOf(order.id)?.refunds?.map((r) => r.amount)).toEqual([order.total / 2, order.total / 2]);
    expect(chargeOf(order.id)?.status).toBe("refunded");
    await expectInventoryInvariants(ev);
  });

  it("refuses to refund a checked-in ticket (409 not_refundable), and a refunded ticket does not check in (410 ticket_void)", async () => {
    const buyer = await tokenFor("refund-buyer-6");
    const order = await buy(buyer, { sectionId: "floor", quantity: 2 });
    const [used, other] = order.tickets as [TicketBody, TicketBody];
    const checkIn = (code: string) => call(`/v1/events/${ev.id}/check-ins`, { method: "POST", token: organizer, json: { code } });
    expect((await checkIn(used.code)).status).toBe(200);
    const refused = await refund(order.id, { tickets: [used.id] }, "used-1");
    expect([refused.status, ((await refused.json()) as Problem).code]).toEqual([409, "not_refundable"]);
    const whole = await refund(order.id, {}, "used-2");
    expect([whole.status, ((await whole.json()) as Problem).code]).toEqual([409, "not_refundable"]);
    expect(chargeOf(order.id)?.refunds ?? []).toEqual([]);
    const ok = await refund(order.id, { tickets: [other.id] }, "used-3");
    const after = ((await ok.json()) as { order: OrderBody }).order;
    expect(after.tickets.map((t) => t.status)).toEqual(["used", "void"]);
    expect(after.status).toBe("partially_refunded");
    const voided = await checkIn(other.code);
    expect([voided.status, ((await voided.json()) as Problem).code]).toEqual([410, "ticket_void"]);
    await expectInventoryInvariants(ev);
  });

  it("hides other organizers' orders (404), refuses buyers (403) and tickets of another order (400)", async () => {
    const buyer = await tokenFor("refund-buyer-4");
    const order = await buy(buyer, { sectionId: "floor", quantity: 1 });
    const other = await tokenFor("org-refunds-other", "organizer");
    const stranger = await refund(order.id, {}, "other-1", other);
    expect([stranger.status, ((await stranger.json()) as Problem).code]).toEqual([404, "not_found"]);
    expect((await refund(order.id, {}, "buyer-1", buyer)).status).toBe(403);
    const foreign = await refund(order.id, { tickets: ["tkt_nope_1"] }, "foreign-1");
    expect([foreign.status, ((await foreign.json()) as Problem).code]).toEqual([400, "validation_failed"]);
    const unknown = await refund("ord_nope", {}, "unknown-1");
    expect(unknown.status).toBe(404);
    // Nothing was refunded by any of these.
    expect(chargeOf(order.id)?.refunds ?? []).toEqual([]);
    const read = (await (await call(`/v1/orders/${order.id}`, { token: buyer })).json()) as { order: OrderBody };
    expect(read.order.status).toBe("paid");
    expect(read.order.tickets.map((t) => t.status)).toEqual(["valid"]);
  });

  it("tells the buyer by mail (the dev mailbox keeps the refund notice)", async () => {
    const buyer = await tokenFor("refund-buyer-5");
    const order = await buy(buyer, { sectionId: "floor", quantity: 1 });
    expect((await refund(order.id, { reason: "duplicate purchase" }, "mail-1")).status).toBe(200);
    await eventually(async () => {
      const keys = await env.CATALOG_KV.list({ prefix: "dev-mailbox:order.refunded:" });
      for (const k of keys.keys) {
        const mail = (await env.CATALOG_KV.get(k.name, "json")) as { text?: string; html?: string } | null;
        if (JSON.stringify(mail).includes(order.id)) return true;
      }
      return false;
    });
  });

  it("sends the organizer a signed order.refunded webhook per refund, and event.cancelled when the event is cancelled", async () => {
    const org = await tokenFor("org-refund-hooks", "organizer");
    const url = `https://hooks.example/refunds-${crypto.randomUUID()}`;
    const put = await call("/v1/organizers/me/webhook", {
      method: "PUT",
      token: org,
      json: { url, events: ["order.refunded", "event.cancelled"] },
    });
    expect(put.status).toBe(200);
    const own = await createEvent(org, { perCustomerLimit: 4 });
    const buyer = await tokenFor("refund-hooks-buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 2 }, own.id);
    const res = await refund(order.id, { tickets: [(order.tickets[0] as TicketBody).id] }, "hooks-1", org);
    expect(res.status).toBe(200);
    const { secret } = (await put.json()) as { secret: string };
    const published = async () => {
      const all = (await (await fetch(`${env.TEST_QSTASH.url}/__published`)).json()) as {
        destination: string;
        headers: Record<string, string>;
        body: string;
      }[];
      return Promise.all(
        all
          .filter((p) => p.destination === url)
          .map(async (p) => {
            const body = JSON.parse(p.body) as { type: string; data: Record<string, unknown> };
            const signed = await signatureValid(p.headers["upstash-forward-breakwater-signature"] ?? "", p.body, secret);
            return { event: body.type, body, signed };
          }),
      );
    };
    await eventually(async () => (await published()).some((p) => p.event === "order.refunded"));
    const refunded = (await published()).find((p) => p.event === "order.refunded");
    expect(refunded?.signed).toBe(true);
    expect(refunded?.body.data).toMatchObject({
      orderId: order.id,
      tickets: [(order.tickets[0] as TicketBody).id],
      amount: order.total / 2,
      status: "partially_refunded",
      cause: "organizer",
    });
    expect((await call(`/v1/events/${own.id}/cancel`, { method: "POST", token: org, json: { reason: "storm" } })).status).toBe(202);
    await eventually(async () => {
      const got = await published();
      return got.some((p) => p.event === "event.cancelled") && got.filter((p) => p.event === "order.refunded").length === 2;
    });
    const cancelled = (await published()).filter((p) => p.event === "event.cancelled");
    expect(cancelled.map((p) => [p.body.data, p.signed])).toEqual([[{ eventId: own.id, reason: "storm" }, true]]);
    // The cancellation refunded the ticket left, once.
    expect(chargeOf(order.id)?.refunds?.map((r) => r.amount)).toEqual([order.total / 2, order.total / 2]);
    // The buyer's cancellation notice names the event.
    await eventually(async () => {
      const keys = await env.CATALOG_KV.list({ prefix: "dev-mailbox:event.cancelled:" });
      const mails = await Promise.all(keys.keys.map((k) => env.CATALOG_KV.get(k.name)));
      return mails.some((m) => m?.includes(order.id) && m.includes(`Cancelled: ${own.name}`));
    });
  });

  it("answers at once when the provider is down, and the Inventory DO's alarm refunds once it is back", async () => {
    const buyer = await tokenFor("refund-buyer-7");
    const order = await buy(buyer, { sectionId: "floor", quantity: 1 });
    setFault("payments", { until: Date.now() + 60_000 });
    try {
      const res = await refund(order.id, {}, "outage-1");
      expect(res.status).toBe(200);
      expect(((await res.json()) as { order: OrderBody }).order.status).toBe("refunded");
      expect(chargeOf(order.id)?.refunds ?? []).toEqual([]);
    } finally {
      clearFaults();
    }
    const loc = parseLocatedId("ord", order.id);
    if (!loc) throw new Error("order id not located");
    await eventually(async () => {
      await runDurableObjectAlarm(inventoryStub(env.INVENTORY, loc));
      return chargeOf(order.id)?.status === "refunded";
    });
    expect(chargeOf(order.id)?.refunds?.map((r) => r.amount)).toEqual([order.total]);
  });

  it("after a partial refund the buyer's limit counts exactly the tickets still valid", async () => {
    const buyer = await tokenFor("refund-limit-buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 2 });
    expect((await refund(order.id, { tickets: [(order.tickets[0] as TicketBody).id] }, "limit-1")).status).toBe(200);
    const two = await hold(buyer, { sectionId: "floor", quantity: 2 });
    expect([two.status, ((await two.json()) as Problem).code]).toEqual([422, "limit_exceeded"]);
    expect((await hold(buyer, { sectionId: "floor", quantity: 1 })).status).toBe(201);
  });

  it("refunds racing new purchases of the same seats: every seat is sold to at most one valid ticket", async () => {
    const org = await tokenFor("org-refund-race", "organizer");
    const race = await createEvent(org, {
      perCustomerLimit: 1,
      sections: [{ id: "a", name: "Block A", kind: "seated", price: 3000, rows: [{ id: "1", seats: 4 }] }],
    });
    const first = await Promise.all([0, 1, 2, 3].map((i) => tokenFor(`race-first-${i}`)));
    const sold = await Promise.all(first.map((t, i) => buy(t, { sectionId: "a", seats: [`1-${i + 1}`] }, race.id)));
    const second = await Promise.all(Array.from({ length: 8 }, (_, i) => tokenFor(`race-second-${i}`)));
    // Every second buyer keeps trying for any seat while the organizer refunds all four orders.
    const bought: { token: string; order: OrderBody }[] = [];
    const until = Date.now() + 15_000;
    const buyers = second.map(async (t) => {
      // Until all four seats found a new buyer (the test asserts it), or time runs out.
      while (Date.now() < until && bought.length < 4) {
        const h = await hold(t, { sectionId: "a", quantity: 1 }, race.id);
        if (h.status !== 201) {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        const holdId = ((await h.json()) as { hold: { id: string } }).hold.id;
        const p = await call("/v1/orders", { method: "POST", token: t, json: { holdId, payment: { method: "sandbox", token: "tok_ok" } } });
        expect(p.status).toBe(201);
        bought.push({ token: t, order: ((await p.json()) as { order: OrderBody }).order });
        return;
      }
    });
    const refunds = sold.map((o, i) => refund(o.id, {}, `race-${i}`, org));
    expect((await Promise.all(refunds)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    await Promise.all(buyers);
    expect(bought).toHaveLength(4);
    // Valid tickets over every order of the event: each seat at most once, and exactly the seats sold.
    const reads = await Promise.all([
      ...sold.map((o, i) => call(`/v1/orders/${o.id}`, { token: first[i] as string })),
      ...bought.map((b) => call(`/v1/orders/${b.order.id}`, { token: b.token })),
    ]);
    const valid = (await Promise.all(reads.map(async (r) => ((await r.json()) as { order: OrderBody }).order))).flatMap((o) =>
      o.tickets.filter((t) => t.status === "valid").map((t) => t.seat),
    );
    expect(valid.sort()).toEqual(["1-1", "1-2", "1-3", "1-4"]);
    expect((await expectInventoryInvariants(race)).a).toEqual({ held: 0, sold: 4, capacity: 4 });
  });

  it("counts refunds in the event's revenue (the rollups net them out)", async () => {
    const org = await tokenFor("org-refund-revenue", "organizer");
    const own = await createEvent(org, { perCustomerLimit: 4 });
    const buyer = await tokenFor("refund-revenue-buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 2 }, own.id);
    expect((await refund(order.id, { tickets: [(order.tickets[0] as TicketBody).id] }, "revenue-1", org)).status).toBe(200);
    const kinds = async () =>
      (
        await env.CATALOG_DB.prepare("SELECT kind, amount FROM analytics_events WHERE event_id = ? ORDER BY kind")
          .bind(own.id)
          .all<{ kind: string; amount: number }>()
      ).results;
    const orderKinds = async () => (await kinds()).filter((k) => k.kind.startsWith("order.")).map((k) => k.kind);
    await eventually(async () => (await orderKinds()).join() === "order.paid,order.refunded");
    await rollUp(env.CATALOG_DB, new Date(Date.now() - 3_600_000), new Date(Date.now() + 60_000));
    const stats = (await (await call(`/v1/events/${own.id}/stats`, { token: org })).json()) as {
      revenue: number;
      funnel: { paid: number };
    };
    expect(stats.revenue).toBe(order.total / 2);
    expect(stats.funnel.paid).toBe(1);
  });
});

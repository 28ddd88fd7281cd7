import { beforeAll, describe, expect, it } from "vitest";
import { resetBreakers, resetSandbox, sandboxLedger } from "../../lib/payments";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";
import { expectInventoryInvariants } from "../inventory-helpers";
import { eventually } from "../queues/helpers";

const BUYERS = 100;
const ORDERS_PER_BUYER = 5;

let organizer: string;
beforeAll(async () => {
  organizer = await tokenFor("org-cancel", "organizer");
  resetSandbox();
  resetBreakers();
});

/** Runs `fn` over `items`, `width` at a time. */
async function pool<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}

const holdIn = (eventId: string, token: string) =>
  call(`/v1/events/${eventId}/holds`, { method: "POST", token, json: { sectionId: "floor", quantity: 1 } });
const pay = (token: string, holdId: string) =>
  call("/v1/orders", { method: "POST", token, json: { holdId, payment: { method: "sandbox", token: "tok_ok" } } });

interface Stats {
  sold: number;
  held: number;
  available: number;
  cancellation?: { orders: number; refunded: number };
}

describe("POST /v1/events/:id/cancel", () => {
  it("stops sales at once and refunds each of 500 paid orders exactly once through the refunds queue", async () => {
    const ev: EventBody = await createEvent(organizer, {
      perCustomerLimit: ORDERS_PER_BUYER + 1,
      sections: [{ id: "floor", name: "Floor", kind: "ga", price: 2500, capacity: 1000, shards: 4 }],
    });
    const buyers = await pool(
      Array.from({ length: BUYERS }, (_, i) => i),
      20,
      (i) => tokenFor(`cancel-buyer-${i}`),
    );
    // 500 paid orders: each buyer holds and pays one place, five times.
    const orders = await pool(
      buyers.flatMap((t) => Array.from({ length: ORDERS_PER_BUYER }, () => t)),
      24,
      async (t) => {
        const h = await holdIn(ev.id, t);
        expect(h.status).toBe(201);
        const holdId = ((await h.json()) as { hold: { id: string } }).hold.id;
        const p = await pay(t, holdId);
        expect(p.status).toBe(201);
        return ((await p.json()) as { order: { id: string; total: number } }).order;
      },
    );
    expect(new Set(orders.map((o) => o.id)).size).toBe(500);
    // One hold still open when the event is cancelled.
    const late = buyers[0] as string;
    const open = await holdIn(ev.id, late);
    expect(open.status).toBe(201);
    const openId = ((await open.json()) as { hold: { id: string } }).hold.id;

    // Another organizer cannot cancel it.
    const other = await tokenFor("org-cancel-other", "organizer");
    expect((await call(`/v1/events/${ev.id}/cancel`, { method: "POST", token: other })).status).toBe(404);

    const res = await call(`/v1/events/${ev.id}/cancel`, { method: "POST", token: organizer, json: { reason: "venue flooded" } });
    expect(res.status).toBe(202);
    expect(((await res.json()) as { event: { status: string } }).event.status).toBe("cancelled");

    // Sales stop at once: a new hold, and the open hold's checkout.
    const refused = await holdIn(ev.id, buyers[1] as string);
    expect([refused.status, ((await refused.json()) as Problem).code]).toEqual([409, "event_cancelled"]);
    const checkout = await pay(late, openId);
    expect([checkout.status, ((await checkout.json()) as Problem).code]).toEqual([409, "event_cancelled"]);
    const read = (await (await call(`/v1/events/${ev.id}`)).json()) as { event: { status: string } };
    expect(read.event.status).toBe("cancelled");

    // The invariants hold while the refunds run.
    await expectInventoryInvariants(ev);

    // Progress in the stats reaches 500 of 500.
    const stats = async () => (await (await call(`/v1/events/${ev.id}/stats`, { token: organizer })).json()) as Stats;
    await eventually(async () => (await stats()).cancellation?.refunded === 500, 50_000);
    expect((await stats()).cancellation).toEqual({ orders: 500, refunded: 500 });

    // Each charge refunded exactly once, in full; nothing else charged.
    const ids = new Set(orders.map((o) => o.id));
    const charges = sandboxLedger().filter((c) => ids.has(c.idempotencyKey.split(":")[0] as string));
    expect(charges).toHaveLength(500);
    for (const c of charges) {
      expect(c.status).toBe("refunded");
      expect(c.refunds?.map((r) => r.amount)).toEqual([c.amount]);
    }
    // The open hold was released; nothing is sold or held; sold + held + available = capacity.
    const totals = await expectInventoryInvariants(ev);
    expect(totals.floor).toEqual({ held: 0, sold: 0, capacity: 1000 });
    const sample = orders[123] as { id: string };
    const owner = buyers[Math.floor(123 / ORDERS_PER_BUYER)] as string;
    const order = (await (await call(`/v1/orders/${sample.id}`, { token: owner })).json()) as { order: { status: string } };
    expect(order.order.status).toBe("refunded");

    // Cancelling again changes nothing and refunds nothing twice.
    expect((await call(`/v1/events/${ev.id}/cancel`, { method: "POST", token: organizer })).status).toBe(202);
    await new Promise((r) => setTimeout(r, 500));
    expect((await stats()).cancellation).toEqual({ orders: 500, refunded: 500 });
    expect(sandboxLedger().every((c) => (c.refunds?.length ?? 0) <= 1)).toBe(true);
  }, 90_000);

  it("a checkout whose payment is in flight when the event is cancelled: 409 event_cancelled, the charge refunded, the places back", async () => {
    const ev: EventBody = await createEvent(organizer, {
      perCustomerLimit: 2,
      sections: [{ id: "floor", name: "Floor", kind: "ga", price: 4000, capacity: 10, shards: 1 }],
    });
    const buyer = await tokenFor("cancel-inflight");
    const h = await holdIn(ev.id, buyer);
    const holdId = ((await h.json()) as { hold: { id: string } }).hold.id;
    // tok_slow: the sandbox answers after about 2 s; the hold is in checkout meanwhile.
    const paying = call("/v1/orders", {
      method: "POST",
      token: buyer,
      json: { holdId, payment: { method: "sandbox", token: "tok_slow" } },
    });
    const holdStatus = async () =>
      ((await (await call(`/v1/holds/${holdId}`, { token: buyer })).json()) as { hold: { status: string } }).hold.status;
    const listed = async () => ((await (await call("/v1/events")).json()) as { events: { id: string }[] }).events.map((e) => e.id);
    expect(await listed()).toContain(ev.id);
    await eventually(async () => (await holdStatus()) === "checking_out");
    expect((await call(`/v1/events/${ev.id}/cancel`, { method: "POST", token: organizer })).status).toBe(202);
    // Left out of the public list at once (this isolate's caches were invalidated by the cancellation).
    expect(await listed()).not.toContain(ev.id);
    const res = await paying;
    expect([res.status, ((await res.json()) as Problem).code]).toEqual([409, "event_cancelled"]);
    const charge = sandboxLedger().find((c) => c.idempotencyKey.startsWith(`${holdId.replace(/^hld_/, "ord_")}:`));
    expect(charge?.status).toBe("refunded");
    expect(await holdStatus()).toBe("released");
    expect((await expectInventoryInvariants(ev)).floor).toEqual({ held: 0, sold: 0, capacity: 10 });
  });
});

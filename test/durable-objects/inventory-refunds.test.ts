import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Inventory } from "../../durable-objects/inventory";
import { parseLocatedId } from "../../lib/hold-id";
import { inventoryStub } from "../../lib/holds";
import { call, createEvent, tokenFor } from "../helpers";
import { eventually } from "../queues/helpers";

type PartRow = { refund_key: string; sent_at: number | null; attempts: number; confirmed: number };

/** A paid order of one seat, refunded whole by its organizer; its Inventory DO and its refund part. */
async function refundedOrder(tag: string, seat: string) {
  const organizer = await tokenFor(`org-refund-${tag}`, "organizer");
  const ev = await createEvent(organizer);
  const buyer = await tokenFor(`refund-${tag}-buyer`);
  const h = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token: buyer, json: { sectionId: "a", seats: [seat] } });
  const holdId = ((await h.json()) as { hold: { id: string } }).hold.id;
  const paid = await call("/v1/orders", {
    method: "POST",
    token: buyer,
    json: { holdId, payment: { method: "sandbox", token: "tok_ok" } },
  });
  const orderId = ((await paid.json()) as { order: { id: string } }).order.id;
  const refunded = await call(`/v1/orders/${orderId}/refund`, {
    method: "POST",
    token: organizer,
    json: {},
    headers: { "Idempotency-Key": `${tag}-1` },
  });
  expect(refunded.status).toBe(200);
  const loc = parseLocatedId("ord", orderId);
  if (!loc) throw new Error("order id not located");
  const stub = inventoryStub(env.INVENTORY, loc);
  const part = () =>
    runInDurableObject(stub, (_i: Inventory, state) =>
      state.storage.sql
        .exec<PartRow>("SELECT refund_key, sent_at, attempts, confirmed FROM refund_parts WHERE order_id = ?", orderId)
        .one(),
    );
  return { orderId, stub, part };
}

describe("Inventory DO: the refund outbox", () => {
  it("sends order.refunded once the provider confirmed, re-sends an unconfirmed one from its alarm, and stops once the shard confirms", async () => {
    const { orderId, stub, part } = await refundedOrder("outbox", "2-5");
    // Sent by the refund itself and confirmed by the orders consumer once the shard has it.
    await eventually(async () => (await part()).confirmed === 1);
    expect((await part()).attempts).toBe(1);

    // As if the confirmation had been lost 31 s ago: the alarm sends it again, and the consumer confirms again.
    await runInDurableObject(stub, (_i: Inventory, state) => {
      state.storage.sql.exec("UPDATE refund_parts SET confirmed = 0, sent_at = ? WHERE order_id = ?", Date.now() - 31_000, orderId);
    });
    await runDurableObjectAlarm(stub);
    expect((await part()).attempts).toBe(2);
    await eventually(async () => (await part()).confirmed === 1);
    // Not due again before 60 s (doubling): a further alarm sends nothing.
    await runInDurableObject(stub, (_i: Inventory, state) => {
      state.storage.sql.exec("UPDATE refund_parts SET confirmed = 0, sent_at = ? WHERE order_id = ?", Date.now() - 31_000, orderId);
    });
    await runDurableObjectAlarm(stub);
    expect((await part()).attempts).toBe(2);
    // The shard holds the order once, its ticket void.
    let rows = 0;
    for (const shard of [env.SHARD_0, env.SHARD_1]) {
      const r = await shard.prepare("SELECT status FROM tickets WHERE order_id = ?").bind(orderId).all<{ status: string }>();
      rows += r.results.length;
      for (const t of r.results) expect(t.status).toBe("void");
    }
    expect(rows).toBe(1);
  });

  it("sends a refund's message once when two senders race, and keeps it due when the queue refuses it", async () => {
    const { orderId, stub, part } = await refundedOrder("race", "1-5");
    await eventually(async () => (await part()).confirmed === 1);
    const key = (await part()).refund_key;
    const unsent = () =>
      runInDurableObject(stub, (_i: Inventory, state) => {
        state.storage.sql.exec("UPDATE refund_parts SET confirmed = 0, sent_at = NULL, attempts = 0 WHERE order_id = ?", orderId);
      });

    // Two settlements of one refund at once (the route's and a retry's): the second finds it sent.
    await unsent();
    await runInDurableObject(stub, (inv: Inventory) => Promise.all([inv.settleRefund(key), inv.settleRefund(key)]));
    expect((await part()).attempts).toBe(1);
    await eventually(async () => (await part()).confirmed === 1);

    // The queue refuses the send: the part stays unsent and due, so the next sender sends it.
    await unsent();
    const refusing = {
      sendBatch: async () => {
        throw new Error("queue unavailable");
      },
    } as unknown as Queue;
    await runInDurableObject(stub, async (inv: Inventory) => {
      const self = inv as unknown as { env: Env };
      const real = self.env;
      self.env = { ...real, ORDERS_QUEUE: refusing };
      try {
        expect(await inv.settleRefund(key)).toBe(true);
      } finally {
        self.env = real;
      }
    });
    expect(await part()).toMatchObject({ sent_at: null, attempts: 0, confirmed: 0 });
    expect(await runInDurableObject(stub, (inv: Inventory) => inv.settleRefund(key))).toBe(true);
    expect((await part()).attempts).toBe(1);
    await eventually(async () => (await part()).confirmed === 1);
  });
});

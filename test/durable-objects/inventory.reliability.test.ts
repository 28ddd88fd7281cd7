import { createExecutionContext, listDurableObjectIds, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CHECKOUT_ABORT_GRACE_MS, CHECKOUT_TIMEOUT_MS, Inventory } from "../../durable-objects/inventory";
import { type CheckoutDeps, checkout } from "../../lib/checkout";
import type { EventDoc } from "../../lib/event-schema";
import { holdLocation, inventoryConfig, inventoryEvent, inventoryStub, limitStub, placeHold } from "../../lib/holds";
import type { Ticket } from "../../lib/order";
import type { PaymentProvider } from "../../lib/payments";
import { resetBreakers, resetSandbox, sandboxProvider } from "../../lib/payments";
import { ApiError } from "../../lib/problem";
import { app } from "../../workers/app";
import { call, createEvent, tokenFor } from "../helpers";
import { eventually, totalRows } from "../queues/helpers";

/**
 * What must survive a crash or a dead edge inside the Inventory DO: the order outbox (kept until the shard
 * confirms), the buyer's ledger (settled by the DO on every change of a hold), the publish marker, the
 * cap on a hold's life after failed payments, and the alarm's retries.
 */

let event: EventDoc;
const HOLD_SECONDS = 60;

const deps = (over: Partial<CheckoutDeps> = {}): CheckoutDeps => ({
  inventory: env.INVENTORY,
  limits: env.LIMIT_LEDGER,
  provider: sandboxProvider({ slowMs: 100 }),
  policy: { timeoutMs: 1_000, retries: 0, backoffBaseMs: 1, backoffCapMs: 1 },
  issueTickets: async (o) =>
    (o.seats.length ? o.seats : Array.from({ length: o.quantity }, (_, i) => `GA-${i + 1}`)).map(
      (seat, i): Ticket => ({ id: `${o.orderId}-t${i}`, seat, code: `code-${seat}`, status: "valid" }),
    ),
  enqueueOrder: async () => {},
  ...over,
});

beforeAll(async () => {
  const ev = await createEvent(await tokenFor("org-reliability", "organizer"), { perCustomerLimit: 2, holdSeconds: HOLD_SECONDS });
  event = ((await (await call(`/v1/events/${ev.id}`)).json()) as { event: EventDoc }).event;
});
beforeEach(() => {
  resetSandbox();
  resetBreakers();
});

const holdFor = (user: string, quantity = 2) =>
  placeHold({ inventory: env.INVENTORY, limits: env.LIMIT_LEDGER }, event, user, { sectionId: "floor", quantity });
const stubOf = (holdId: string) => inventoryStub(env.INVENTORY, holdLocation(holdId));
const sql = (holdId: string, query: string, ...args: (string | number)[]) =>
  runInDurableObject(stubOf(holdId), (_i: Inventory, state) => {
    state.storage.sql.exec(query, ...args);
  });
const holdRow = (holdId: string) =>
  runInDurableObject(stubOf(holdId), (_i: Inventory, state) =>
    state.storage.sql
      .exec<{ status: string; created_at: number; expires_at: number }>(
        "SELECT status, created_at, expires_at FROM holds WHERE id = ?",
        holdId,
      )
      .one(),
  );
/** Runs the DO's alarm now (as the runtime would when it is due). */
async function alarmNow(holdId: string): Promise<void> {
  await runInDurableObject(stubOf(holdId), (_i: Inventory, state) => state.storage.setAlarm(Date.now() - 1));
  await runDurableObjectAlarm(stubOf(holdId));
}
/** The buyer's ledger entry of a hold. */
const ledgerEntry = (user: string, holdId: string) =>
  runInDurableObject(
    limitStub(env.LIMIT_LEDGER, event, user),
    (_l, state) =>
      state.storage.sql
        .exec<{ state: string; expires_at: number }>("SELECT state, expires_at FROM reservations WHERE hold_id = ?", holdId)
        .toArray()[0],
  );
const outboxOf = (holdId: string) => runInDurableObject(stubOf(holdId), (inst: Inventory) => inst.unsentOrders().map((o) => o.id));

describe("order outbox (#16)", () => {
  it("hands a recorded order to the orders queue itself, keeps it until its shard confirms it, and sends it again until then", async () => {
    const user = "rel-outbox";
    const hold = await holdFor(user);
    const { order } = await checkout(deps(), user, { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } });
    // The DO sent the message (no call from the edge): the consumer stores it and confirms back.
    await eventually(async () => (await totalRows(order.id)) === 1 && (await outboxOf(hold.id)).length === 0);
    const sentAt = await runInDurableObject(
      stubOf(hold.id),
      (_i: Inventory, state) =>
        state.storage.sql.exec<{ t: number | null }>("SELECT enqueued_at AS t FROM orders WHERE id = ?", order.id).one().t,
    );
    expect(sentAt).toBeTypeOf("number");
    // Now the queue loses a message it took: the order is sent and unconfirmed, and not in its shard.
    for (const shard of ["SHARD_0", "SHARD_1"] as const) {
      await env[shard].prepare("DELETE FROM tickets WHERE order_id = ?").bind(order.id).run();
      await env[shard].prepare("DELETE FROM orders WHERE id = ?").bind(order.id).run();
    }
    await sql(hold.id, "INSERT INTO order_outbox (order_id, due_at, attempts) VALUES (?, ?, 1)", order.id, Date.now() + 60_000);
    expect(await outboxOf(hold.id)).toEqual([order.id]);
    // The alarm before the confirmation is due sends nothing; once due, it sends the order again through
    // the real orders queue, whose consumer stores it and confirms back.
    await alarmNow(hold.id);
    expect(await totalRows(order.id)).toBe(0);
    await sql(hold.id, "UPDATE order_outbox SET due_at = ? WHERE order_id = ?", Date.now() - 1, order.id);
    await alarmNow(hold.id);
    await eventually(async () => (await totalRows(order.id)) === 1 && (await outboxOf(hold.id)).length === 0);
    // A confirmation that comes twice (a duplicate delivery) changes nothing.
    await runInDurableObject(stubOf(hold.id), (inst: Inventory) => inst.confirmStored([order.id]));
    expect(await outboxOf(hold.id)).toEqual([]);
    expect(await totalRows(order.id)).toBe(1);
  });
});

describe("order outbox, several orders per call", () => {
  it("marks several orders sent and confirms some of them in one call each", async () => {
    const orders: { holdId: string; id: string }[] = [];
    for (const user of ["rel-multi-a", "rel-multi-b", "rel-multi-c"]) {
      const hold = await holdFor(user, 1);
      const { order } = await checkout(deps(), user, { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } });
      orders.push({ holdId: hold.id, id: order.id });
    }
    const holdId = orders[0]?.holdId as string;
    expect(new Set(orders.map((o) => JSON.stringify(holdLocation(o.holdId)))).size).toBe(1);
    // Wait for the real hand-off and confirmations, then put the three back as recorded and never sent.
    await eventually(async () => (await outboxOf(holdId)).length === 0);
    for (const o of orders) {
      await sql(holdId, "UPDATE orders SET enqueued_at = NULL WHERE id = ?", o.id);
      await sql(holdId, "INSERT INTO order_outbox (order_id, due_at, attempts) VALUES (?, ?, 0)", o.id, Date.now() + 60_000);
    }
    const ids = orders.map((o) => o.id);
    const state = () =>
      runInDurableObject(stubOf(holdId), (_i: Inventory, st) =>
        ids.map((id) => ({
          sent: st.storage.sql.exec<{ t: number | null }>("SELECT enqueued_at AS t FROM orders WHERE id = ?", id).one().t !== null,
          attempts:
            st.storage.sql.exec<{ a: number }>("SELECT attempts AS a FROM order_outbox WHERE order_id = ?", id).toArray()[0]?.a ?? null,
        })),
      );
    await runInDurableObject(stubOf(holdId), (inst: Inventory) => inst.markOrdersSent(ids));
    expect(await state()).toEqual(ids.map(() => ({ sent: true, attempts: 1 })));
    // Marked again (a duplicate hand-off): attempts stay at one.
    await runInDurableObject(stubOf(holdId), (inst: Inventory) => inst.markOrdersSent(ids));
    expect(await state()).toEqual(ids.map(() => ({ sent: true, attempts: 1 })));
    await runInDurableObject(stubOf(holdId), (inst: Inventory) => inst.confirmStored([ids[0] as string, ids[2] as string]));
    expect(await outboxOf(holdId)).toEqual([ids[1]]);
  });
});

describe("alarm retries", () => {
  it("retries a pending refund until the provider settles it", async () => {
    const hold = await holdFor("rel-refund", 1);
    const provider = sandboxProvider();
    const key = "rel-refund-charge:1";
    await provider.charge({ idempotencyKey: key, amount: 5000, currency: "EUR", token: "tok_ok" });
    await runInDurableObject(stubOf(hold.id), (inst: Inventory) =>
      inst.recordRefund({ idempotencyKey: key, holdId: hold.id, provider: "sandbox", reason: "test", status: "pending", chargeId: null }),
    );
    await alarmNow(hold.id);
    const refunds = await runInDurableObject(stubOf(hold.id), (inst: Inventory) => inst.refunds().filter((r) => r.idempotencyKey === key));
    expect(refunds).toMatchObject([{ status: "refunded", attempts: 1 }]);
  });
});

describe("the buyer's ledger follows the hold (#1)", () => {
  it("a checkout whose edge died: reopened and expired by the DO, the places stop counting", async () => {
    const user = "rel-dead-edge";
    const hold = await holdFor(user);
    // The edge starts the checkout and dies during the payment (the charge never answers).
    let answer: (r: { status: "declined"; reason: string }) => void = () => {};
    const hanging: PaymentProvider = {
      name: "sandbox",
      charge: () => new Promise((resolve) => (answer = resolve)),
      voidCharge: async () => ({ refunded: false }),
      refund: async () => ({ refunded: false }),
    };
    const dead = checkout(
      deps({ provider: hanging, policy: { timeoutMs: 600_000, retries: 0, backoffBaseMs: 1, backoffCapMs: 1 } }),
      user,
      {
        holdId: hold.id,
        payment: { method: "sandbox", token: "tok_ok" },
      },
    ).catch((e: unknown) => e);
    await eventually(async () => (await holdRow(hold.id)).status === "checking_out");
    await eventually(async () => (await ledgerEntry(user, hold.id))?.state === "checking_out");
    // Checkout timeout: the DO voids and reopens the hold, and the ledger holds it with the new expiry.
    await sql(hold.id, "UPDATE holds SET checkout_at = ? WHERE id = ?", Date.now() - CHECKOUT_TIMEOUT_MS - 1, hold.id);
    await alarmNow(hold.id);
    const reopened = await holdRow(hold.id);
    expect(reopened.status).toBe("active");
    expect(await ledgerEntry(user, hold.id)).toMatchObject({ state: "held" });
    // The hold expires: its places leave the ledger, and the buyer holds up to the limit again.
    await sql(hold.id, "UPDATE holds SET expires_at = ? WHERE id = ?", Date.now() - 1, hold.id);
    await alarmNow(hold.id);
    expect((await holdRow(hold.id)).status).toBe("expired");
    expect(await ledgerEntry(user, hold.id)).toMatchObject({ state: "released" });
    const again = await holdFor(user);
    expect(again.quantity).toBe(2);
    answer({ status: "declined", reason: "too late" });
    expect(await dead).toBeInstanceOf(ApiError);
  });
});

describe("failed payments cannot keep a hold forever (#2)", () => {
  it("extends a hold after a decline at most to creation + holdSeconds + one grace period", async () => {
    const user = "rel-decline";
    const hold = await holdFor(user, 1);
    const decline = () => checkout(deps(), user, { holdId: hold.id, payment: { method: "sandbox", token: "tok_decline" } });
    // Made long ago and kept alive by earlier declines: one more decline must not give it a full grace.
    const created = Date.now() - HOLD_SECONDS * 1000 - CHECKOUT_ABORT_GRACE_MS + 10_000;
    await sql(hold.id, "UPDATE holds SET created_at = ?, expires_at = ? WHERE id = ?", created, Date.now() + 5_000, hold.id);
    await expect(decline()).rejects.toMatchObject({ code: "payment_declined" });
    const row = await holdRow(hold.id);
    expect(row.status).toBe("active");
    expect(row.expires_at).toBeLessThanOrEqual(created + HOLD_SECONDS * 1000 + CHECKOUT_ABORT_GRACE_MS);
    // Past the cap, a decline ends the hold: its places return to sale and leave the ledger.
    await sql(hold.id, "UPDATE holds SET created_at = ? WHERE id = ?", created - 20_000, hold.id);
    await expect(decline()).rejects.toMatchObject({ code: "payment_declined" });
    expect((await holdRow(hold.id)).status).toBe("expired");
    await expect(decline()).rejects.toMatchObject({ code: "hold_expired" });
    await eventually(async () => (await ledgerEntry(user, hold.id))?.state === "released");
  });
});

describe("availability after a restart (#17)", () => {
  it("publishes a change the object never published before it was reset", async () => {
    const ev = await createEvent(await tokenFor("org-reliability", "organizer"), { perCustomerLimit: 4 });
    const doc = ((await (await call(`/v1/events/${ev.id}`)).json()) as { event: EventDoc }).event;
    const section = doc.sections.find((s) => s.id === "a");
    if (!section) throw new Error("no section a");
    const stub = inventoryStub(env.INVENTORY, { eventId: doc.id, sectionId: "a", shard: 0 });
    const room = env.WAITING_ROOM.get(env.WAITING_ROOM.idFromName(doc.id));
    // A hold, then the object dies before its alarm published it (the change was "dirty" in memory only).
    await runInDurableObject(stub, async (inst: Inventory, state) => {
      const held = await inst.hold(inventoryConfig(doc, section, 0), inventoryEvent(doc), {
        holdId: `hld_abcdefghjkmnpqrstvwx.${doc.id}.a.0`,
        userId: "rel-publish",
        quantity: 3,
      });
      expect(held.ok).toBe(true);
      await state.storage.deleteAlarm();
    });
    expect((await room.availability(doc)).sections.find((s) => s.id === "a")).toMatchObject({ held: 0 });
    // A new instance over the same storage (what a restart makes) publishes it by itself: nothing else
    // happens in the section.
    await runInDurableObject(stub, async (_i: Inventory, state) => {
      const restarted = new Inventory(state, env);
      await state.blockConcurrencyWhile(async () => {});
      expect(await state.storage.getAlarm()).not.toBeNull();
      await restarted.alarm();
    });
    const snapshot = await room.availability(doc);
    expect(snapshot.sections.find((s) => s.id === "a")).toMatchObject({ held: 3, sold: 0, available: 7, capacity: 10 });
  });
});

describe("crafted ids (#5)", () => {
  it("reads of holds and orders of unknown events, sections or shards answer 404 and create no object", async () => {
    const buyer = await tokenFor("rel-crafted");
    const before = (await listDurableObjectIds(env.INVENTORY)).length;
    const rand = "abcdefghjkmnpqrstvwx";
    const ids = [
      `${rand}.evt_zzzzzzzzzzzzzzzzzzzz.floor.0`, // no such event
      `${rand}.${event.id}.nosuch.0`, // no such section
      `${rand}.${event.id}.floor.9`, // no such shard (2 shards)
    ];
    for (const id of ids) {
      for (const [method, path] of [
        ["GET", `/v1/holds/hld_${id}`],
        ["DELETE", `/v1/holds/hld_${id}`],
        ["GET", `/v1/orders/ord_${id}`],
      ] as const) {
        const res = await call(path, { method, token: buyer });
        expect(res.status, `${method} ${path}`).toBe(404);
        expect(((await res.json()) as { code: string }).code).toBe("not_found");
      }
    }
    expect((await listDurableObjectIds(env.INVENTORY)).length).toBe(before);
  });

  it("a read of a real section nobody has held in writes nothing there", async () => {
    const buyer = await tokenFor("rel-crafted");
    const id = `abcdefghjkmnpqrstvwx.${event.id}.a.0`;
    for (const [method, path] of [
      ["GET", `/v1/holds/hld_${id}`],
      ["DELETE", `/v1/holds/hld_${id}`],
      ["GET", `/v1/orders/ord_${id}`],
    ] as const)
      expect((await call(path, { method, token: buyer })).status, `${method} ${path}`).toBe(404);
    const tables = await runInDurableObject(inventoryStub(env.INVENTORY, { eventId: event.id, sectionId: "a", shard: 0 }), (_i, state) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\'")
        .toArray(),
    );
    expect(tables).toEqual([]);
  });

  it("are rate limited per buyer (route group `reads`)", async () => {
    const buyer = await tokenFor("rel-scanner");
    const limited = { ...env, RATE_LIMITS: JSON.stringify({ reads: { user: { limit: 3, periodSeconds: 60, burst: 3 }, ip: false } }) };
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await app.fetch(
        new Request(`https://breakwater.test/v1/holds/hld_abcdefghjkmnpqrstvw${i}.${event.id}.nosuch.0`, {
          headers: { Authorization: `Bearer ${buyer}` },
        }),
        limited,
        createExecutionContext(),
      );
      statuses.push(res.status);
      if (res.status === 429) expect(((await res.json()) as { code: string }).code).toBe("rate_limited");
    }
    expect(statuses).toEqual([404, 404, 404, 429, 429]);
  });
});

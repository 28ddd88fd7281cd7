import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Inventory } from "../../durable-objects/inventory";
import { type CheckoutDeps, checkout, getOrder } from "../../lib/checkout";
import type { EventDoc } from "../../lib/event-schema";
import { holdLocation, inventoryStub, placeHold } from "../../lib/holds";
import type { Ticket } from "../../lib/order";
import { resetBreakers, resetSandbox, sandboxCallCount, sandboxLedger, sandboxProvider, setSandboxOutage } from "../../lib/payments";
import { ApiError } from "../../lib/problem";
import { call, createEvent, tokenFor } from "../helpers";
import { eventually, totalRows } from "../queues/helpers";

let event: EventDoc;
const sent: Record<string, unknown>[] = [];

function deps(over: Partial<CheckoutDeps> = {}): CheckoutDeps {
  return {
    inventory: env.INVENTORY,
    limits: env.LIMIT_LEDGER,
    provider: sandboxProvider({ slowMs: 300 }),
    policy: { timeoutMs: 1_000, retries: 1, backoffBaseMs: 1, backoffCapMs: 5 },
    issueTickets: async (o) =>
      (o.seats.length ? o.seats : Array.from({ length: o.quantity }, (_, i) => `GA-${i + 1}`)).map(
        (seat, i): Ticket => ({ id: `${o.orderId}-t${i}`, seat, code: `code-${seat}`, status: "valid" }),
      ),
    enqueueOrder: async (m) => {
      sent.push(m);
    },
    ...over,
  };
}

beforeAll(async () => {
  const ev = await createEvent(await tokenFor("org-checkout", "organizer"), { perCustomerLimit: 10 });
  event = ((await (await call(`/v1/events/${ev.id}`)).json()) as { event: EventDoc }).event;
});
beforeEach(() => {
  resetSandbox();
  resetBreakers();
  sent.length = 0;
});

const newHold = (user: string, sectionId = "floor", quantity = 1) =>
  placeHold(
    { inventory: env.INVENTORY, limits: env.LIMIT_LEDGER },
    event,
    user,
    sectionId === "a" ? { sectionId, quantity } : { sectionId, quantity },
  );

function holdRow(holdId: string) {
  return runInDurableObject(inventoryStub(env.INVENTORY, holdLocation(holdId)), (_i: Inventory, state) =>
    state.storage.sql.exec<{ status: string; expires_at: number }>("SELECT status, expires_at FROM holds WHERE id = ?", holdId).one(),
  );
}

/** Invariant 2: every successful charge ends in a sold order or a recorded refund. */
async function expectNoChargeWithoutTickets(): Promise<void> {
  const charges = sandboxLedger();
  expect(charges.length, "the scenario made a charge to check").toBeGreaterThan(0);
  for (const c of charges) {
    const orderId = c.idempotencyKey.split(":")[0] as string;
    const holdId = orderId.replace(/^ord_/, "hld_");
    if (c.status === "refunded") {
      // A refunded charge is recorded as refunded by the DO that owned the hold.
      const refunds = await runInDurableObject(inventoryStub(env.INVENTORY, holdLocation(holdId)), (inst: Inventory) =>
        inst.refunds().filter((r) => r.idempotencyKey === c.idempotencyKey),
      );
      expect(
        refunds.map((r) => r.status),
        `charge ${c.idempotencyKey} has a recorded refund`,
      ).toEqual(["refunded"]);
      continue;
    }
    const row = await holdRow(holdId);
    expect(row.status, `charge ${c.idempotencyKey} has a sold order`).toBe("sold");
  }
}

const errorOf = async (p: Promise<unknown>) => {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ApiError);
  return e as ApiError;
};

describe("checkout", () => {
  it("charges, sells the seats, records the order durably and hands it to the queue", async () => {
    const hold = await newHold("co-1", "a", 2);
    const { order, created } = await checkout(deps(), "co-1", { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } });
    expect(created).toBe(true);
    expect(order).toMatchObject({ status: "paid", eventId: event.id, seats: hold.seats, total: hold.total, currency: "EUR" });
    expect(order.tickets.map((t) => t.seat)).toEqual(hold.seats);
    expect(await holdRow(hold.id)).toMatchObject({ status: "sold" });
    expect(await getOrder({ inventory: env.INVENTORY, limits: env.LIMIT_LEDGER }, order.id, "co-1")).toEqual(order);
    // The Inventory DO hands the order to the orders queue itself (nothing through the edge's enqueueOrder).
    expect(sent).toEqual([]);
    await eventually(async () => (await totalRows(order.id)) === 1);
    expect(sandboxLedger()).toMatchObject([{ status: "succeeded", amount: hold.total }]);
    await expectNoChargeWithoutTickets();
  });

  it("replays a completed checkout without charging again", async () => {
    const hold = await newHold("co-2");
    const first = await checkout(deps(), "co-2", { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } });
    const again = await checkout(deps(), "co-2", { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } });
    expect(again).toEqual({ order: first.order, created: false });
    expect(sandboxLedger()).toHaveLength(1);
  });

  it("keeps the hold after a decline so the buyer can pay with another card", async () => {
    const hold = await newHold("co-3");
    expect((await errorOf(checkout(deps(), "co-3", { holdId: hold.id, payment: { method: "sandbox", token: "tok_decline" } }))).code).toBe(
      "payment_declined",
    );
    expect((await holdRow(hold.id)).status).toBe("active");
    const { order } = await checkout(deps(), "co-3", { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } });
    expect(order.status).toBe("paid");
    await expectNoChargeWithoutTickets();
  });

  it("answers 503 on a provider outage, charges nothing, and reopens the hold", async () => {
    const hold = await newHold("co-4");
    const e = await errorOf(checkout(deps(), "co-4", { holdId: hold.id, payment: { method: "sandbox", token: "tok_error" } }));
    expect([e.code, e.status]).toEqual(["overloaded", 503]);
    expect(e.retryAfterSeconds).toBeGreaterThan(0);
    expect((await holdRow(hold.id)).status).toBe("active");
    expect(sandboxLedger()).toEqual([]);
  });

  it("voids a charge whose answer was lost (timeout) and records the refund", async () => {
    const hold = await newHold("co-5");
    const e = await errorOf(
      checkout(deps({ policy: { timeoutMs: 100, retries: 0, backoffBaseMs: 1, backoffCapMs: 1 } }), "co-5", {
        holdId: hold.id,
        payment: { method: "sandbox", token: "tok_lost" },
      }),
    );
    expect(e.code).toBe("overloaded");
    expect(sandboxLedger()).toMatchObject([{ status: "refunded" }]);
    const refunds = await runInDurableObject(inventoryStub(env.INVENTORY, holdLocation(hold.id)), (inst: Inventory) =>
      inst.refunds().filter((r) => r.holdId === hold.id),
    );
    expect(refunds).toMatchObject([{ holdId: hold.id, status: "refunded", reason: "payment outcome unknown" }]);
    // The next attempt uses a new payment key, so the voided charge is never "replayed" as a success.
    const { order } = await checkout(deps(), "co-5", { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } });
    expect(order.status).toBe("paid");
    expect(
      sandboxLedger()
        .map((c) => c.status)
        .sort(),
    ).toEqual(["refunded", "succeeded"]);
    await expectNoChargeWithoutTickets();
  });

  it("refunds the charge when the order cannot be recorded", async () => {
    const hold = await newHold("co-6");
    const stub = inventoryStub(env.INVENTORY, holdLocation(hold.id));
    const sabotage = deps({
      issueTickets: async (o) => {
        // Something moves the hold out of checkout behind our back: completeCheckout must refuse.
        await runInDurableObject(stub, (inst: Inventory) => inst.abortCheckout(hold.id));
        return [{ id: "t", seat: "x", code: "c", status: "valid" as const }].map((t) => ({ ...t, id: `${o.orderId}-t` }));
      },
    });
    const e = await errorOf(checkout(sabotage, "co-6", { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } }));
    expect(e.code).toBe("overloaded");
    expect(sandboxLedger()).toMatchObject([{ status: "refunded" }]);
    expect((await holdRow(hold.id)).status).toBe("active");
    await expectNoChargeWithoutTickets();
  });

  it("never expires a hold under a payment in flight", async () => {
    const hold = await newHold("co-7");
    const stub = inventoryStub(env.INVENTORY, holdLocation(hold.id));
    const pending = checkout(deps(), "co-7", { holdId: hold.id, payment: { method: "sandbox", token: "tok_slow" } });
    await new Promise((r) => setTimeout(r, 50));
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec("UPDATE holds SET expires_at = ? WHERE id = ?", Date.now() - 1, hold.id);
    });
    await runInDurableObject(stub, (_i, state) => state.storage.setAlarm(Date.now() - 1));
    await runDurableObjectAlarm(stub);
    expect((await holdRow(hold.id)).status).toBe("checking_out");
    const { order } = await pending;
    expect(order.status).toBe("paid");
    expect((await holdRow(hold.id)).status).toBe("sold");
  });

  it("refuses an expired hold with 410 and charges nothing", async () => {
    const hold = await newHold("co-8");
    await runInDurableObject(inventoryStub(env.INVENTORY, holdLocation(hold.id)), (_i, state) => {
      state.storage.sql.exec("UPDATE holds SET expires_at = ? WHERE id = ?", Date.now() - 1, hold.id);
    });
    const e = await errorOf(checkout(deps(), "co-8", { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } }));
    expect([e.code, e.status]).toEqual(["hold_expired", 410]);
    expect(sandboxCallCount()).toBe(0);
  });

  it("lets only one of concurrent checkouts of a hold charge", async () => {
    const hold = await newHold("co-9");
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => checkout(deps(), "co-9", { holdId: hold.id, payment: { method: "sandbox", token: "tok_slow" } })),
    );
    const ok = results.filter((r) => r.status === "fulfilled");
    expect(ok).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect((r.reason as ApiError).code).toBe("idempotency_conflict");
    expect(sandboxLedger()).toHaveLength(1);
  });

  it("resolves a checkout whose edge died: the DO voids its charge and reopens the hold", async () => {
    const hold = await newHold("co-10");
    const stub = inventoryStub(env.INVENTORY, holdLocation(hold.id));
    const begun = await runInDurableObject(stub, (inst: Inventory) => inst.beginCheckout(hold.id, "co-10", "sandbox"));
    if (!begun.ok) throw new Error("begin failed");
    // The edge charged, then died before recording the order.
    await sandboxProvider().charge({ idempotencyKey: begun.value.paymentKey, amount: hold.total, currency: "EUR", token: "tok_ok" });
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec("UPDATE holds SET checkout_at = ? WHERE id = ?", Date.now() - 10 * 60_000, hold.id);
    });
    await runInDurableObject(stub, (_i, state) => state.storage.setAlarm(Date.now() - 1));
    await runDurableObjectAlarm(stub);
    expect(sandboxLedger()).toMatchObject([{ status: "refunded" }]);
    expect((await holdRow(hold.id)).status).toBe("active");
    await expectNoChargeWithoutTickets();
  });

  it("fails fast with 503 while the payment breaker is open, keeping the hold", async () => {
    setSandboxOutage(true);
    for (let i = 0; i < 6; i++) {
      const h = await newHold(`co-br-${i}`);
      await checkout(deps(), `co-br-${i}`, { holdId: h.id, payment: { method: "sandbox", token: "tok_ok" } }).catch(() => undefined);
    }
    setSandboxOutage(false);
    const hold = await newHold("co-11");
    const calls = sandboxCallCount();
    const e = await errorOf(checkout(deps(), "co-11", { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } }));
    expect(e.code).toBe("overloaded");
    expect(sandboxCallCount()).toBe(calls);
    expect((await holdRow(hold.id)).status).toBe("active");
  });
});

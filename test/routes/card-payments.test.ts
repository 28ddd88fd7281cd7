import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type Stripe from "stripe";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseLocatedId } from "../../lib/hold-id";
import { inventoryStub } from "../../lib/holds";
import { paymentProvider } from "../../lib/payment-methods";
import { resetBreakers } from "../../lib/payments";
import { PAYMENT_KEY_METADATA } from "../../lib/stripe";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";
import { expectInventoryInvariants } from "../inventory-helpers";
import type { StandinDelivery, StripeStandinInfo } from "../setup/stripe-standin";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_STRIPE: StripeStandinInfo;
    }
  }
}

interface OrderBody {
  id: string;
  status: string;
  total: number;
  currency: string;
  tickets: { id: string; seat: string; code: string }[];
}

const standin = env.TEST_STRIPE;
const stripeState = async () =>
  (await (await fetch(`${standin.url}/__state`)).json()) as { intents: Stripe.PaymentIntent[]; refunds: Stripe.Refund[]; calls: string[] };
const deliveries = async (pi: string) => (await (await fetch(`${standin.url}/__events?payment_intent=${pi}`)).json()) as StandinDelivery[];
const settle = (pi: string, outcome: "succeeded" | "failed" = "succeeded") =>
  fetch(`${standin.url}/__settle/${pi}?outcome=${outcome}`, { method: "POST" });
const signAt = async (payload: string, timestamp?: number) =>
  (
    (await (await fetch(`${standin.url}/__sign`, { method: "POST", body: JSON.stringify({ payload, timestamp }) })).json()) as {
      signature: string;
    }
  ).signature;
const deliver = (payload: string, signature?: string) =>
  call("/v1/webhooks/stripe", {
    method: "POST",
    body: payload,
    headers: { "Content-Type": "application/json", ...(signature ? { "Stripe-Signature": signature } : {}) },
  });

/** The intent paying for `orderId`'s checkout attempt `attempt`. */
async function intentOf(orderId: string, attempt = 1): Promise<Stripe.PaymentIntent> {
  const found = (await stripeState()).intents.filter((i) => i.metadata[PAYMENT_KEY_METADATA] === `${orderId}:${attempt}`);
  expect(found).toHaveLength(1);
  return found[0] as Stripe.PaymentIntent;
}

let organizer: string;
let ev: EventBody;
beforeAll(async () => {
  organizer = await tokenFor("org-card", "organizer");
  ev = await createEvent(organizer, { perCustomerLimit: 10 });
});
beforeEach(() => resetBreakers());

async function holdFor(token: string, body: unknown = { sectionId: "floor", quantity: 2 }): Promise<string> {
  const res = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: body });
  expect(res.status).toBe(201);
  return ((await res.json()) as { hold: { id: string } }).hold.id;
}
const payCard = (token: string, holdId: string, pm: string) =>
  call("/v1/orders", { method: "POST", token, json: { holdId, payment: { method: "card", token: pm } } });
const holdStatus = async (token: string, holdId: string) =>
  ((await (await call(`/v1/holds/${holdId}`, { token })).json()) as { hold: { status: string } }).hold.status;
const orderIdOf = (holdId: string) => holdId.replace(/^hld_/, "ord_");
const inventoryOf = (holdId: string) =>
  inventoryStub(env.INVENTORY, parseLocatedId("hld", holdId) ?? { eventId: "", sectionId: "", shard: 0 });

describe("card payments through Stripe (happy)", () => {
  it("charges one PaymentIntent per attempt under the order's key and answers 201 with tickets", async () => {
    const t = await tokenFor("card-1");
    const holdId = await holdFor(t);
    const res = await payCard(t, holdId, "pm_card_visa");
    expect(res.status).toBe(201);
    const { order } = (await res.json()) as { order: OrderBody };
    expect(order).toMatchObject({ id: orderIdOf(holdId), status: "paid", total: 10_000, currency: "EUR" });
    expect(order.tickets).toHaveLength(2);
    const pi = await intentOf(order.id);
    expect(pi).toMatchObject({ status: "succeeded", amount: 10_000, amount_received: 10_000, currency: "eur" });
    expect(await holdStatus(t, holdId)).toBe("sold");

    // Stripe's own webhook for the same payment arrives later: nothing changes.
    const [succeeded] = (await deliveries(pi.id)).filter((d) => d.type === "payment_intent.succeeded");
    const hook = await deliver(succeeded?.payload ?? "", succeeded?.signature);
    expect(hook.status).toBe(200);
    expect(await hook.json()).toEqual({ received: true, result: "already_paid" });
    expect((await stripeState()).refunds.filter((r) => r.payment_intent === pi.id)).toEqual([]);
    expect(((await (await call(`/v1/orders/${order.id}`, { token: t })).json()) as { order: OrderBody }).order).toEqual(order);
  });

  it("retries a Stripe outage (500) and charges once", async () => {
    const t = await tokenFor("card-2");
    const holdId = await holdFor(t);
    await fetch(`${standin.url}/__fail?n=1`, { method: "POST" });
    const res = await payCard(t, holdId, "pm_card_visa");
    expect(res.status).toBe(201);
    const state = await stripeState();
    const mine = state.intents.filter((i) => i.metadata[PAYMENT_KEY_METADATA]?.startsWith(orderIdOf(holdId)));
    expect(mine.map((i) => i.status)).toEqual(["succeeded"]);
  });

  it("leaves a processing payment pending (202) and completes the order from the signed webhook", async () => {
    const t = await tokenFor("card-3");
    const holdId = await holdFor(t, { sectionId: "a", seats: ["2-1"] });
    const res = await payCard(t, holdId, "pm_standin_processing");
    expect(res.status).toBe(202);
    const pending = ((await res.json()) as { order: OrderBody }).order;
    expect(pending).toMatchObject({ id: orderIdOf(holdId), status: "pending", tickets: [] });
    const read = await call(`/v1/orders/${pending.id}`, { token: t });
    expect(((await read.json()) as { order: OrderBody }).order.status).toBe("pending");
    expect(await holdStatus(t, holdId)).toBe("checking_out");

    const pi = await intentOf(pending.id);
    expect((await settle(pi.id)).status).toBe(200);
    const [succeeded] = (await deliveries(pi.id)).filter((d) => d.type === "payment_intent.succeeded");
    const hook = await deliver(succeeded?.payload ?? "", succeeded?.signature);
    expect(await hook.json()).toEqual({ received: true, result: "paid" });
    const paid = ((await (await call(`/v1/orders/${pending.id}`, { token: t })).json()) as { order: OrderBody }).order;
    expect(paid).toMatchObject({ status: "paid", total: 8000 });
    expect(paid.tickets.map((x) => x.seat)).toEqual(["2-1"]);
    expect(await holdStatus(t, holdId)).toBe("sold");
    await expectInventoryInvariants(ev);
  });

  it("reopens the hold when a processing payment fails", async () => {
    const t = await tokenFor("card-4");
    const holdId = await holdFor(t);
    expect((await payCard(t, holdId, "pm_standin_processing")).status).toBe(202);
    const pi = await intentOf(orderIdOf(holdId));
    await settle(pi.id, "failed");
    const [failed] = (await deliveries(pi.id)).filter((d) => d.type === "payment_intent.payment_failed");
    expect(await (await deliver(failed?.payload ?? "", failed?.signature)).json()).toEqual({ received: true, result: "reopened" });
    expect(await holdStatus(t, holdId)).toBe("active");
    expect((await stripeState()).refunds.filter((r) => r.payment_intent === pi.id)).toEqual([]);
  });
});

describe("card payments through Stripe (errors)", () => {
  it("answers 402 on a declined card, keeps the hold, and a second card pays under a new attempt", async () => {
    const t = await tokenFor("card-5");
    const holdId = await holdFor(t);
    const res = await payCard(t, holdId, "pm_card_chargeDeclined");
    expect(res.status).toBe(402);
    const problem = (await res.json()) as Problem;
    expect(problem.code).toBe("payment_declined");
    expect(problem.detail).toContain("generic_decline");
    expect(await holdStatus(t, holdId)).toBe("active");
    expect((await payCard(t, holdId, "pm_card_visa")).status).toBe(201);
    expect((await intentOf(orderIdOf(holdId), 1)).status).toBe("requires_payment_method");
    expect((await intentOf(orderIdOf(holdId), 2)).status).toBe("succeeded");
  });

  it("refunds a charge whose answer was lost (unknown outcome) and reopens the hold", async () => {
    const t = await tokenFor("card-9");
    const holdId = await holdFor(t);
    // Every confirm takes effect at Stripe but its answer never arrives (first try and both retries).
    await fetch(`${standin.url}/__lose?path=confirm&n=3`, { method: "POST" });
    const res = await payCard(t, holdId, "pm_card_visa");
    expect(res.status).toBe(503);
    expect(((await res.json()) as Problem).code).toBe("overloaded");
    const pi = await intentOf(orderIdOf(holdId));
    expect(pi.status).toBe("succeeded");
    expect((await stripeState()).refunds.filter((r) => r.payment_intent === pi.id)).toHaveLength(1);
    expect(await inventoryOf(holdId).refunds()).toContainEqual(
      expect.objectContaining({
        idempotencyKey: `${orderIdOf(holdId)}:1`,
        status: "refunded",
        chargeId: pi.id,
        reason: "payment outcome unknown",
      }),
    );
    expect(await holdStatus(t, holdId)).toBe("active");
  });

  it("declines an unknown PaymentMethod without charging", async () => {
    const t = await tokenFor("card-6");
    const holdId = await holdFor(t);
    const res = await payCard(t, holdId, "pm_nonexistent");
    expect(res.status).toBe(402);
    expect(((await res.json()) as Problem).detail).toContain("invalid_token");
    expect(await holdStatus(t, holdId)).toBe("active");
  });

  it("refunds a payment that succeeds after its hold expired, once, and records it", async () => {
    const t = await tokenFor("card-7");
    const holdId = await holdFor(t);
    const declined = await payCard(t, holdId, "pm_card_authenticationRequired");
    expect(declined.status).toBe(402);
    expect(((await declined.json()) as Problem).detail).toContain("authentication_required");
    const inv = inventoryOf(holdId);
    await runInDurableObject(inv, (_i, state) => {
      state.storage.sql.exec("UPDATE holds SET expires_at = ? WHERE id = ?", Date.now() - 1, holdId);
    });
    expect(await holdStatus(t, holdId)).toBe("expired");

    // The buyer completes 3-D Secure anyway, after the hold is gone: Stripe says succeeded.
    const pi = await intentOf(orderIdOf(holdId));
    await settle(pi.id);
    const [succeeded] = (await deliveries(pi.id)).filter((d) => d.type === "payment_intent.succeeded");
    const hook = await deliver(succeeded?.payload ?? "", succeeded?.signature);
    expect(hook.status).toBe(200);
    expect(await hook.json()).toEqual({ received: true, result: "refunded" });

    const refunds = (await stripeState()).refunds.filter((r) => r.payment_intent === pi.id);
    expect(refunds).toHaveLength(1);
    expect(refunds[0]).toMatchObject({ amount: 10_000, currency: "eur", status: "succeeded" });
    const recorded = await inv.refunds();
    expect(recorded).toContainEqual(
      expect.objectContaining({
        idempotencyKey: `${orderIdOf(holdId)}:1`,
        status: "refunded",
        chargeId: pi.id,
        reason: "paid after its hold was gone",
      }),
    );
    expect((await call(`/v1/orders/${orderIdOf(holdId)}`, { token: t })).status).toBe(404);
    await expectInventoryInvariants(ev);

    // Stripe retries the event later (same id, signed anew at its own time): handled already, still one refund.
    const later = Math.floor(Date.now() / 1000) + 60;
    const again = await deliver(succeeded?.payload ?? "", await signAt(succeeded?.payload ?? "", later));
    expect(await again.json()).toEqual({ received: true, result: "duplicate" });
    expect((await stripeState()).refunds.filter((r) => r.payment_intent === pi.id)).toHaveLength(1);
  });

  it("refuses forged, altered, stale, unsigned and replayed webhooks with 400 and changes nothing", async () => {
    const t = await tokenFor("card-8");
    const holdId = await holdFor(t);
    expect((await payCard(t, holdId, "pm_standin_processing")).status).toBe(202);
    const pi = await intentOf(orderIdOf(holdId));
    await settle(pi.id);
    const [real] = (await deliveries(pi.id)).filter((d) => d.type === "payment_intent.succeeded");
    const payload = real?.payload ?? "";
    const ts = Math.floor(Date.now() / 1000);
    const forgedSig = `t=${ts},v1=${"ab".repeat(32)}`;
    const altered = payload.replace(`"amount": 10000`, `"amount": 1`);
    expect(altered).not.toBe(payload);
    const attempts = [
      await deliver(payload, forgedSig),
      await deliver(altered, real?.signature),
      await deliver(payload, await signAt(payload, ts - 600)),
      await deliver(payload),
    ];
    for (const res of attempts) {
      expect(res.status).toBe(400);
      expect(((await res.json()) as Problem).code).toBe("validation_failed");
    }
    expect(await holdStatus(t, holdId)).toBe("checking_out");
    expect(((await (await call(`/v1/orders/${orderIdOf(holdId)}`, { token: t })).json()) as { order: OrderBody }).order.status).toBe(
      "pending",
    );

    expect((await deliver(payload, real?.signature)).status).toBe(200);
    const paid = ((await (await call(`/v1/orders/${orderIdOf(holdId)}`, { token: t })).json()) as { order: OrderBody }).order;
    expect(paid.status).toBe("paid");
    const replay = await deliver(payload, real?.signature);
    expect(replay.status).toBe(400);
    expect(((await replay.json()) as Problem).detail).toMatch(/replayed/);
    expect(((await (await call(`/v1/orders/${orderIdOf(holdId)}`, { token: t })).json()) as { order: OrderBody }).order).toEqual(paid);
    expect((await stripeState()).refunds.filter((r) => r.payment_intent === pi.id)).toEqual([]);
  });

  it("is off without a Stripe key: no card provider, and the sandbox still answers", () => {
    expect(paymentProvider("card", { STRIPE_SECRET_KEY: "" })).toBeNull();
    expect(paymentProvider("card", {})).toBeNull();
    expect(paymentProvider("card", env)?.name).toBe("stripe");
    expect(paymentProvider("sandbox", {})?.name).toBe("sandbox");
  });
});

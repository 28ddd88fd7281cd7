import { env } from "cloudflare:workers";
import type Stripe from "stripe";
import { beforeEach, describe, expect, it } from "vitest";
import { paymentProvider } from "../../lib/payment-methods";
import { resetBreakers } from "../../lib/payments";
import { PAYMENT_KEY_METADATA } from "../../lib/stripe";
import { call, createEvent, type Problem, tokenFor } from "../helpers";

const standin = env.TEST_STRIPE;
const stripeState = async () =>
  (await (await fetch(`${standin.url}/__state`)).json()) as { intents: Stripe.PaymentIntent[]; refunds: Stripe.Refund[]; calls: string[] };

beforeEach(() => resetBreakers());

describe("refunds of card payments (Stripe stand-in)", () => {
  it("refunds each part of a card order through Stripe with its amount, once per refund key", async () => {
    const organizer = await tokenFor("org-card-refunds", "organizer");
    const ev = await createEvent(organizer, { perCustomerLimit: 4 });
    const buyer = await tokenFor("card-refund-buyer");
    const h = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token: buyer, json: { sectionId: "a", seats: ["1-1", "1-2"] } });
    const holdId = ((await h.json()) as { hold: { id: string } }).hold.id;
    const paid = await call("/v1/orders", {
      method: "POST",
      token: buyer,
      json: { holdId, payment: { method: "card", token: "pm_card_visa" } },
    });
    expect(paid.status).toBe(201);
    const order = ((await paid.json()) as { order: { id: string; total: number; tickets: { id: string }[] } }).order;
    const intent = (await stripeState()).intents.find((i) => i.metadata[PAYMENT_KEY_METADATA] === `${order.id}:1`);
    expect(intent?.status).toBe("succeeded");
    const refundsOf = async () => (await stripeState()).refunds.filter((r) => r.payment_intent === intent?.id);

    const refund = (body: unknown, key: string) =>
      call(`/v1/orders/${order.id}/refund`, { method: "POST", token: organizer, json: body, headers: { "Idempotency-Key": key } });
    const first = await refund({ tickets: [order.tickets[0]?.id] }, "card-part-1");
    expect(first.status).toBe(200);
    expect(((await first.json()) as { order: { status: string } }).order.status).toBe("partially_refunded");
    expect((await refundsOf()).map((r) => r.amount)).toEqual([order.total / 2]);
    // The same request again: the same answer, no second refund at Stripe.
    expect((await refund({ tickets: [order.tickets[0]?.id] }, "card-part-1")).status).toBe(200);
    expect((await refundsOf()).map((r) => r.amount)).toEqual([order.total / 2]);
    const again = await refund({ tickets: [order.tickets[0]?.id] }, "card-part-2");
    expect([again.status, ((await again.json()) as Problem).code]).toEqual([409, "not_refundable"]);

    const rest = await refund({}, "card-part-3");
    expect(rest.status).toBe(409);
    const last = await refund({ tickets: [order.tickets[1]?.id] }, "card-part-4");
    expect(((await last.json()) as { order: { status: string } }).order.status).toBe("refunded");
    const refunds = await refundsOf();
    expect(refunds.map((r) => r.amount)).toEqual([order.total / 2, order.total / 2]);
    expect(refunds.reduce((n, r) => n + r.amount, 0)).toBe(intent?.amount_received);
  });

  it("the provider's refund is idempotent per refund key (a retried call after a lost answer refunds once)", async () => {
    const organizer = await tokenFor("org-card-refunds-2", "organizer");
    const ev = await createEvent(organizer, { perCustomerLimit: 4 });
    const buyer = await tokenFor("card-refund-buyer-2");
    const h = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token: buyer, json: { sectionId: "floor", quantity: 2 } });
    const holdId = ((await h.json()) as { hold: { id: string } }).hold.id;
    const paid = await call("/v1/orders", {
      method: "POST",
      token: buyer,
      json: { holdId, payment: { method: "card", token: "pm_card_visa" } },
    });
    const order = ((await paid.json()) as { order: { id: string; total: number; currency: string } }).order;
    const provider = paymentProvider("card", env);
    if (!provider) throw new Error("card payments not configured");
    const req = {
      refundKey: `${order.id}:refund:test`,
      chargeKey: `${order.id}:1`,
      amount: 1000,
      charge: { amount: order.total, currency: order.currency },
    };
    expect(await provider.refund(req)).toMatchObject({ refunded: true });
    expect(await provider.refund(req)).toMatchObject({ refunded: true });
    const intent = (await stripeState()).intents.find((i) => i.metadata[PAYMENT_KEY_METADATA] === `${order.id}:1`);
    expect((await stripeState()).refunds.filter((r) => r.payment_intent === intent?.id).map((r) => r.amount)).toEqual([1000]);
    // No charge under that key: nothing to refund.
    expect(await provider.refund({ ...req, refundKey: "other", chargeKey: "ord_none:1" })).toMatchObject({ refunded: false });
  });
});

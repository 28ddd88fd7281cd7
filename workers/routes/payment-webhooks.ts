import { Hono } from "hono";
import { z } from "zod";
import { settlePayment } from "../../lib/checkout";
import { ApiError } from "../../lib/problem";
import { isSignatureError, stripeProvider, stripeSettings, verifyStripeEvent } from "../../lib/stripe";
import { route } from "../route";
import type { AppEnv } from "../types";
import { checkoutDeps } from "./orders";

/** Payment providers' webhooks: Stripe's signed PaymentIntent events settle card checkouts. */
export const paymentWebhooks = new Hono<AppEnv>();

const webhookAnswer = z.object({
  received: z.literal(true),
  result: z
    .enum(["paid", "already_paid", "refunded", "reopened", "ignored", "duplicate"])
    .describe(
      "paid: the order was recorded; refunded: no checkout was waiting, the payment went back; duplicate: Stripe's retry of a handled event",
    ),
});

route(
  paymentWebhooks,
  {
    operationId: "receiveStripeWebhook",
    method: "post",
    path: "/v1/webhooks/stripe",
    summary:
      "Stripe's signed webhook (payment_intent.succeeded / payment_failed / canceled). Verified with the Stripe SDK (Stripe-Signature, 5 minutes tolerance); a forged, altered, stale or replayed delivery is refused with 400 and changes nothing.",
    tags: ["payments"],
    headers: [
      { name: "Stripe-Signature", required: true, description: "t=<unix seconds>,v1=<HMAC-SHA256 of t.payload with the endpoint secret>" },
    ],
    responses: { 200: { description: "Handled", schema: webhookAnswer } },
    errors: ["validation_failed", "not_found", "overloaded"],
  },
  async (c) => {
    const settings = stripeSettings(c.env);
    if (!settings.secretKey || !settings.webhookSecret)
      throw new ApiError("not_found", "Card payments are not enabled on this server (no Stripe keys are configured).");
    const signature = c.req.header("Stripe-Signature");
    const invalid = (detail: string) =>
      new ApiError("validation_failed", detail, { errors: [{ path: "Stripe-Signature", message: "does not verify" }] });
    if (!signature) throw invalid("The Stripe-Signature header is missing.");
    const body = await c.req.text();
    let event: Awaited<ReturnType<typeof verifyStripeEvent>>;
    try {
      event = await verifyStripeEvent(body, signature, settings.webhookSecret);
    } catch (err) {
      if (isSignatureError(err)) throw invalid("The Stripe signature does not verify (forged, altered, or older than 5 minutes).");
      throw err;
    }
    if (!event) return c.json({ received: true as const, result: "ignored" as const });
    if (event.type === "payment_intent.processing") return c.json({ received: true as const, result: "ignored" as const });
    const provider = stripeProvider({ secretKey: settings.secretKey, apiUrl: settings.apiUrl });
    const result = await settlePayment(
      checkoutDeps(c, provider),
      {
        paymentKey: event.paymentKey,
        outcome: event.type === "payment_intent.succeeded" ? "succeeded" : "failed",
        chargeId: event.intent.id,
        amount: event.intent.amount,
        currency: event.intent.currency.toUpperCase(),
      },
      { eventId: event.eventId, signature },
    );
    if (result === "replayed") throw invalid("This signed delivery was already received (replayed).");
    return c.json({ received: true as const, result });
  },
);

import Stripe from "stripe";
import { config } from "./config";
import type { ChargeAmount, ChargeRequest, ChargeResult, PaymentProvider } from "./payments";
import { PaymentUnavailableError } from "./payments";

/**
 * Card payments through Stripe (the `card` payment method), with the official SDK on its fetch HTTP
 * client. One PaymentIntent per checkout attempt, created unconfirmed under the attempt's payment key
 * (`<orderId>:<attempt>`) as Stripe idempotency key, then confirmed under `<key>:confirm`. Creating first
 * is what makes an unknown outcome undoable: replaying the create under the same key (same parameters)
 * finds the PaymentIntent without charging anything, and its current status says whether to refund it,
 * cancel it, or wait for it. The final outcome is the PaymentIntent's status or Stripe's signed webhook
 * (`verifyStripeEvent`, used by `POST /v1/webhooks/stripe`).
 */

/** Stripe settings, read from the environment once per call site. */
export interface StripeSettings {
  secretKey: string | null;
  webhookSecret: string | null;
  apiUrl: string | null;
}

/** Reads the Stripe settings; an empty value counts as absent. */
export function stripeSettings(env: object): StripeSettings {
  const e = config(env);
  return { secretKey: e.STRIPE_SECRET_KEY || null, webhookSecret: e.STRIPE_WEBHOOK_SECRET || null, apiUrl: e.STRIPE_API_URL || null };
}

/**
 * The publishable key the checkout page hands to Stripe.js, or null when the page cannot take cards: both
 * STRIPE_SECRET_KEY (the API charges) and STRIPE_PUBLISHABLE_KEY (the browser tokenizes) must be set. The
 * publishable key is public; the secret key never leaves the server.
 */
export function cardCheckoutKey(env: object): string | null {
  const e = config(env);
  return e.STRIPE_SECRET_KEY && e.STRIPE_PUBLISHABLE_KEY ? e.STRIPE_PUBLISHABLE_KEY : null;
}

/** Metadata key naming the checkout attempt a PaymentIntent pays for. */
export const PAYMENT_KEY_METADATA = "breakwater_payment_key";

/** Stripe clients per key and base URL, per isolate (a client is reusable and stateless). */
const clients = new Map<string, Stripe>();

/** The SDK client for `settings`: fetch HTTP client, no SDK retries (chargeWithPolicy retries and counts every attempt). */
function stripeClient(secretKey: string, apiUrl: string | null): Stripe {
  const id = `${secretKey}\n${apiUrl ?? ""}`;
  let client = clients.get(id);
  if (!client) {
    const base = apiUrl ? new URL(apiUrl) : null;
    const protocol = base?.protocol === "http:" ? "http" : "https";
    client = new Stripe(secretKey, {
      httpClient: Stripe.createFetchHttpClient(),
      maxNetworkRetries: 0,
      ...(base ? { host: base.hostname, port: base.port || (protocol === "http" ? 80 : 443), protocol } : {}),
    });
    clients.set(id, client);
  }
  return client;
}

/** Web Crypto for webhook signatures (workerd has no Node crypto HMAC in the SDK's sync path). */
const cryptoProvider = Stripe.createSubtleCryptoProvider();

/** The create parameters of an attempt: derived from its key and amount only, so a replay is identical. */
const intentParams = (key: string, c: ChargeAmount): Stripe.PaymentIntentCreateParams => ({
  amount: c.amount,
  currency: c.currency.toLowerCase(),
  allowed_payment_method_types: ["card"],
  metadata: { [PAYMENT_KEY_METADATA]: key },
});

/** Errors that say nothing about the payment (network, 5xx, 429, our key): retried, counted by the breaker. */
function unavailable(err: unknown): PaymentUnavailableError | null {
  if (!(err instanceof Stripe.errors.StripeError)) return null;
  if (
    err.type === "StripeConnectionError" ||
    err.type === "StripeAPIError" ||
    err.type === "StripeRateLimitError" ||
    err.type === "StripeAuthenticationError" ||
    (err.statusCode ?? 0) >= 500 ||
    err.statusCode === 409 // idempotent request still in flight at Stripe
  )
    return new PaymentUnavailableError(`stripe: ${err.type} ${err.statusCode ?? ""} ${err.message}`.trim());
  return null;
}

/** The outcome a PaymentIntent's status means for a checkout. */
function intentOutcome(pi: Pick<Stripe.PaymentIntent, "id" | "status" | "last_payment_error">): ChargeResult {
  switch (pi.status) {
    case "succeeded":
      return { status: "succeeded", chargeId: pi.id };
    case "processing":
      return { status: "pending", chargeId: pi.id };
    case "requires_action":
      // No 3-D Secure step in this API: the buyer is told it was declined. Should it still succeed later,
      // the webhook finds no checkout waiting for it and refunds it.
      return { status: "declined", reason: "authentication_required" };
    default:
      return { status: "declined", reason: pi.last_payment_error?.code ?? pi.last_payment_error?.decline_code ?? pi.status };
  }
}

/** The Stripe provider. */
export function stripeProvider(settings: { secretKey: string; apiUrl: string | null }): PaymentProvider {
  const stripe = stripeClient(settings.secretKey, settings.apiUrl);

  /** Finds (or harmlessly creates, unconfirmed) the PaymentIntent of `key` and reads its current status. */
  async function intentOf(key: string, amount: ChargeAmount): Promise<Stripe.PaymentIntent> {
    const created = await stripe.paymentIntents.create(intentParams(key, amount), { idempotencyKey: key });
    // A replayed create answers the saved response of the first one: read the current state.
    return stripe.paymentIntents.retrieve(created.id);
  }

  return {
    name: "stripe",
    async charge(req: ChargeRequest): Promise<ChargeResult> {
      try {
        const intent = await stripe.paymentIntents.create(intentParams(req.idempotencyKey, req), { idempotencyKey: req.idempotencyKey });
        const confirm: Stripe.PaymentIntentConfirmParams = req.token.startsWith("ctoken_")
          ? { confirmation_token: req.token }
          : { payment_method: req.token };
        const confirmed = await stripe.paymentIntents.confirm(intent.id, confirm, { idempotencyKey: `${req.idempotencyKey}:confirm` });
        return intentOutcome(confirmed);
      } catch (err) {
        const down = unavailable(err);
        if (down) throw down;
        if (err instanceof Stripe.errors.StripeCardError)
          return { status: "declined", reason: err.decline_code ?? err.code ?? "card_declined" };
        if (err instanceof Stripe.errors.StripeInvalidRequestError && err.code === "resource_missing")
          return { status: "declined", reason: "invalid_token" };
        throw err;
      }
    },
    async voidCharge(key, _signal, charge) {
      if (!charge) throw new PaymentUnavailableError("stripe: cannot look up a payment without its amount");
      try {
        const pi = await intentOf(key, charge);
        switch (pi.status) {
          case "succeeded": {
            await stripe.refunds.create(
              { payment_intent: pi.id, metadata: { [PAYMENT_KEY_METADATA]: key } },
              { idempotencyKey: `refund:${key}` },
            );
            return { refunded: true, chargeId: pi.id };
          }
          case "canceled":
            return { refunded: false, chargeId: pi.id };
          case "processing":
            // Cannot be canceled while processing: retried until it settles (the webhook also refunds it).
            throw new PaymentUnavailableError(`stripe: ${pi.id} is still processing`);
          default:
            await stripe.paymentIntents.cancel(pi.id, {}, { idempotencyKey: `cancel:${key}` });
            return { refunded: false, chargeId: pi.id };
        }
      } catch (err) {
        throw unavailable(err) ?? err;
      }
    },
    async refund(req) {
      try {
        const pi = await intentOf(req.chargeKey, req.charge);
        if (pi.status !== "succeeded") return { refunded: false, chargeId: pi.id };
        await stripe.refunds.create(
          { payment_intent: pi.id, amount: req.amount, metadata: { [PAYMENT_KEY_METADATA]: req.chargeKey } },
          { idempotencyKey: req.refundKey },
        );
        return { refunded: true, chargeId: pi.id };
      } catch (err) {
        throw unavailable(err) ?? err;
      }
    },
  };
}

/** The PaymentIntent events the webhook acts on. */
export type StripeIntentEvent = {
  eventId: string;
  type: "payment_intent.succeeded" | "payment_intent.payment_failed" | "payment_intent.canceled" | "payment_intent.processing";
  intent: Stripe.PaymentIntent;
  paymentKey: string;
};

/**
 * Verifies a webhook delivery with the SDK (`Stripe-Signature`: `t=<unix>,v1=<HMAC-SHA256(secret,
 * t.payload)>`, 5 minutes tolerance) and narrows it to a PaymentIntent event of a Breakwater checkout.
 * Throws `StripeSignatureVerificationError` for a forged, altered or stale delivery; returns null for
 * events Breakwater does not act on.
 */
export async function verifyStripeEvent(
  body: string,
  signature: string,
  webhookSecret: string,
  toleranceSeconds = 300,
): Promise<StripeIntentEvent | null> {
  const event = await Stripe.webhooks.constructEventAsync(body, signature, webhookSecret, toleranceSeconds, cryptoProvider);
  switch (event.type) {
    case "payment_intent.succeeded":
    case "payment_intent.payment_failed":
    case "payment_intent.canceled":
    case "payment_intent.processing": {
      const intent = event.data.object;
      const paymentKey = intent.metadata?.[PAYMENT_KEY_METADATA];
      return paymentKey ? { eventId: event.id, type: event.type, intent, paymentKey } : null;
    }
    default:
      return null;
  }
}

/** True for the SDK's signature error (forged, tampered, stale or missing signature). */
export const isSignatureError = (err: unknown): boolean => err instanceof Stripe.errors.StripeSignatureVerificationError;

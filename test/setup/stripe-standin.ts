import { createHmac, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type Stripe from "stripe";
import type { TestProject } from "vitest/node";

/**
 * A loopback stand-in for the part of Stripe's API that card checkout uses, so the `stripe` SDK is tested
 * over real HTTP (its form encoding, idempotency keys, errors) and webhooks are signed with Stripe's scheme.
 * Objects are typed with the SDK's own types (generated from Stripe's OpenAPI spec), so their shapes are
 * Stripe's documented ones.
 *
 * API (Bearer secret key required; form-encoded bodies; `Idempotency-Key` replays the saved response and a
 * reuse with other parameters is a 400 `idempotency_error`, as Stripe does):
 * - `POST /v1/payment_intents`, `GET /v1/payment_intents/:id`, `POST /v1/payment_intents/:id/confirm`,
 *   `POST /v1/payment_intents/:id/cancel`, `POST /v1/refunds`.
 * - Confirmation by Stripe's test PaymentMethods: `pm_card_visa`/`pm_card_mastercard` succeed;
 *   `pm_card_chargeDeclined` (generic_decline) and `pm_card_chargeDeclinedInsufficientFunds` are 402
 *   card errors; `pm_card_authenticationRequired` leaves it `requires_action`; the stand-in's own
 *   `pm_standin_processing` leaves it `processing`; any other id is a 400 `resource_missing`.
 * Test controls: `POST /__fail?n=N` (next N API calls answer 500), `POST /__lose?path=confirm&n=N` (the next N
 * calls whose path contains `path` take effect but answer 502: an unknown outcome), `POST /__settle/:pi?outcome=succeeded|failed`
 * (a processing or requires_action intent settles, as the bank or the buyer would), `GET /__events?payment_intent=`
 * (signed deliveries: `{ id, type, payload, signature }`), `POST /__sign` (`{ payload, timestamp? }` → a
 * signature header), `GET /__state` (intents, refunds, API calls, and `requests`: each call with its Idempotency-Key).
 */

/** What the stand-in gives the tests (a type alias: it must fit miniflare's JSON bindings). */
export type StripeStandinInfo = { url: string; secretKey: string; webhookSecret: string };

declare module "vitest" {
  export interface ProvidedContext {
    stripeStandin: StripeStandinInfo;
  }
}

/** One signed webhook delivery, as Stripe would POST it. */
export type StandinDelivery = { id: string; type: string; payload: string; signature: string };

const API_VERSION = "2026-11-18.endive";

const id = (prefix: string): string => `${prefix}_${randomBytes(12).toString("hex")}`;
const now = (): number => Math.floor(Date.now() / 1000);

/** Stripe's signature header: `t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<payload>")>`. */
export function stripeSignature(secret: string, payload: string, timestamp = now()): string {
  const v1 = createHmac("sha256", secret).update(`${timestamp}.${payload}`).digest("hex");
  return `t=${timestamp},v1=${v1}`;
}

function newIntent(amount: number, currency: string, metadata: Record<string, string>): Stripe.PaymentIntent {
  const piId = id("pi");
  return {
    id: piId,
    object: "payment_intent",
    allowed_payment_method_types: ["card"],
    amount,
    amount_capturable: 0,
    amount_received: 0,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods: null,
    canceled_at: null,
    cancellation_reason: null,
    capture_method: "automatic",
    client_secret: `${piId}_secret_${randomBytes(8).toString("hex")}`,
    confirmation_method: "automatic",
    created: now(),
    currency,
    customer: null,
    customer_account: null,
    description: null,
    excluded_payment_method_types: null,
    last_payment_error: null,
    latest_charge: null,
    livemode: false,
    managed_payments: null,
    metadata,
    next_action: null,
    on_behalf_of: null,
    payment_method: null,
    payment_method_configuration_details: null,
    payment_method_options: null,
    payment_method_types: ["card"],
    payment_record: null,
    processing: null,
    receipt_email: null,
    review: null,
    setup_future_usage: null,
    shipping: null,
    source: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: "requires_payment_method",
    transfer_group: null,
  };
}

function newRefund(pi: Stripe.PaymentIntent, metadata: Record<string, string>): Stripe.Refund {
  return {
    id: id("re"),
    object: "refund",
    amount: pi.amount_received,
    application: null,
    balance_transaction: id("txn"),
    charge: typeof pi.latest_charge === "string" ? pi.latest_charge : null,
    created: now(),
    currency: pi.currency,
    customer: null,
    customer_account: null,
    metadata,
    payment_intent: pi.id,
    payment_method: typeof pi.payment_method === "string" ? pi.payment_method : null,
    reason: null,
    receipt_number: null,
    source_transfer_reversal: null,
    status: "succeeded",
    transfer_reversal: null,
  };
}

/** Stripe's error envelope. */
type ErrorBody = {
  error: { type: string; code?: string; decline_code?: string; message: string; param?: string; payment_intent?: Stripe.PaymentIntent };
};

/** Form body (`a[b]=c`, `a[0]=x`) → flat map of the keys Stripe's SDK sends. */
const formOf = (raw: string): URLSearchParams => new URLSearchParams(raw);
const metadataOf = (form: URLSearchParams): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, v] of form) {
    const m = /^metadata\[(.+)\]$/.exec(k);
    if (m?.[1]) out[m[1]] = v;
  }
  return out;
};

/** A running stand-in: where it is, its keys, and how to stop it. */
export type StripeStandin = StripeStandinInfo & { close: () => Promise<void> };

/**
 * Starts a stand-in on a free loopback port that accepts `secretKey` and signs its webhooks with
 * `webhookSecret`: the workers project's globalSetup (below) and Node tests that serve the real server
 * (test/e2e) each start their own.
 */
export async function startStripeStandin(keys: { secretKey: string; webhookSecret: string }): Promise<StripeStandin> {
  const { secretKey, webhookSecret } = keys;
  const intents = new Map<string, Stripe.PaymentIntent>();
  const refunds: Stripe.Refund[] = [];
  const deliveries: (StandinDelivery & { paymentIntent: string })[] = [];
  const idempotent = new Map<string, { request: string; status: number; body: string }>();
  const calls: string[] = [];
  /** Every API request with its Idempotency-Key (null without one), in order. */
  const requests: { method: string; path: string; idempotencyKey: string | null }[] = [];
  let failNext = 0;
  const lose = { path: "", n: 0 };

  const emit = (type: Stripe.Event.Type, pi: Stripe.PaymentIntent, idempotencyKey: string | null) => {
    const event = {
      id: id("evt"),
      object: "event" as const,
      api_version: API_VERSION,
      created: now(),
      data: { object: structuredClone(pi) },
      livemode: false,
      pending_webhooks: 1,
      request: { id: id("req"), idempotency_key: idempotencyKey },
      type,
    } satisfies Omit<Stripe.PaymentIntentSucceededEvent, "type"> & { type: Stripe.Event.Type };
    const payload = JSON.stringify(event, null, 2);
    deliveries.push({ id: event.id, type, payload, signature: stripeSignature(webhookSecret, payload), paymentIntent: pi.id });
  };

  const succeed = (pi: Stripe.PaymentIntent) => {
    pi.status = "succeeded";
    pi.amount_received = pi.amount;
    pi.latest_charge ??= id("ch");
    pi.last_payment_error = null;
    pi.next_action = null;
  };

  /** Confirms with a test PaymentMethod; returns [status, body] and emits the events Stripe would. */
  function confirm(pi: Stripe.PaymentIntent, form: URLSearchParams, key: string | null): [number, Stripe.PaymentIntent | ErrorBody] {
    if (pi.status !== "requires_payment_method" && pi.status !== "requires_confirmation")
      return [
        400,
        {
          error: {
            type: "invalid_request_error",
            code: "payment_intent_unexpected_state",
            message: `This PaymentIntent's status is ${pi.status}; it cannot be confirmed.`,
            payment_intent: pi,
          },
        },
      ];
    const pm = form.get("payment_method") ?? form.get("confirmation_token") ?? "";
    const known = [
      "pm_card_visa",
      "pm_card_mastercard",
      "pm_card_chargeDeclined",
      "pm_card_chargeDeclinedInsufficientFunds",
      "pm_card_authenticationRequired",
      "pm_standin_processing",
    ];
    if (!known.includes(pm))
      return [
        400,
        {
          error: {
            type: "invalid_request_error",
            code: "resource_missing",
            param: "payment_method",
            message: `No such PaymentMethod: '${pm}'`,
          },
        },
      ];
    pi.payment_method = id("pm");
    pi.latest_charge = id("ch");
    switch (pm) {
      case "pm_card_chargeDeclined":
      case "pm_card_chargeDeclinedInsufficientFunds": {
        const decline = pm === "pm_card_chargeDeclined" ? "generic_decline" : "insufficient_funds";
        pi.status = "requires_payment_method";
        pi.last_payment_error = { type: "card_error", code: "card_declined", decline_code: decline, message: "Your card was declined." };
        emit("payment_intent.payment_failed", pi, key);
        return [
          402,
          {
            error: {
              type: "card_error",
              code: "card_declined",
              decline_code: decline,
              message: "Your card was declined.",
              payment_intent: pi,
            },
          },
        ];
      }
      case "pm_card_authenticationRequired":
        pi.status = "requires_action";
        pi.next_action = { type: "use_stripe_sdk", use_stripe_sdk: {} };
        emit("payment_intent.requires_action", pi, key);
        return [200, pi];
      case "pm_standin_processing":
        pi.status = "processing";
        emit("payment_intent.processing", pi, key);
        return [200, pi];
      default:
        succeed(pi);
        emit("payment_intent.succeeded", pi, key);
        return [200, pi];
    }
  }

  function api(method: string, path: string, form: URLSearchParams, key: string | null): [number, unknown] {
    const pathParts = path.split("/").filter(Boolean); // v1, resource, id?, action?
    const resource = pathParts[1];
    const objectId = pathParts[2];
    const action = pathParts[3];
    if (resource === "payment_intents" && method === "POST" && !objectId) {
      const pi = newIntent(Number(form.get("amount")), String(form.get("currency")), metadataOf(form));
      intents.set(pi.id, pi);
      emit("payment_intent.created", pi, key);
      return [200, pi];
    }
    if (resource === "payment_intents" && objectId) {
      const pi = intents.get(objectId);
      if (!pi)
        return [
          404,
          { error: { type: "invalid_request_error", code: "resource_missing", message: `No such payment_intent: '${objectId}'` } },
        ];
      if (method === "GET" && !action) return [200, pi];
      if (method === "POST" && action === "confirm") return confirm(pi, form, key);
      if (method === "POST" && action === "cancel") {
        if (pi.status === "succeeded" || pi.status === "processing" || pi.status === "canceled")
          return [
            400,
            {
              error: {
                type: "invalid_request_error",
                code: "payment_intent_unexpected_state",
                message: `You cannot cancel this PaymentIntent because it has a status of ${pi.status}.`,
              },
            },
          ];
        pi.status = "canceled";
        pi.canceled_at = now();
        pi.cancellation_reason = "requested_by_customer";
        emit("payment_intent.canceled", pi, key);
        return [200, pi];
      }
    }
    if (resource === "refunds" && method === "POST" && !objectId) {
      const pi = intents.get(form.get("payment_intent") ?? "");
      if (!pi)
        return [
          400,
          {
            error: { type: "invalid_request_error", code: "resource_missing", param: "payment_intent", message: "No such payment_intent" },
          },
        ];
      if (pi.status !== "succeeded")
        return [
          400,
          {
            error: {
              type: "invalid_request_error",
              code: "charge_not_refundable",
              message: "This PaymentIntent has no successful charge to refund.",
            },
          },
        ];
      const back = refunds.filter((r) => r.payment_intent === pi.id).reduce((n, r) => n + r.amount, 0);
      const amount = form.has("amount") ? Number(form.get("amount")) : pi.amount_received - back;
      if (back >= pi.amount_received)
        return [
          400,
          {
            error: {
              type: "invalid_request_error",
              code: "charge_already_refunded",
              message: `Charge ${String(pi.latest_charge)} has already been refunded.`,
            },
          },
        ];
      if (!Number.isInteger(amount) || amount <= 0 || back + amount > pi.amount_received)
        return [
          400,
          {
            error: {
              type: "invalid_request_error",
              code: "amount_too_large",
              param: "amount",
              message: `Refund amount (${amount}) is greater than the unrefunded amount on the charge (${pi.amount_received - back}).`,
            },
          },
        ];
      const refund = { ...newRefund(pi, metadataOf(form)), amount };
      refunds.push(refund);
      return [200, refund];
    }
    return [404, { error: { type: "invalid_request_error", message: `Unrecognized request URL (${method}: ${path}).` } }];
  }

  const send = (res: ServerResponse, status: number, body: unknown) =>
    res
      .writeHead(status, { "Content-Type": "application/json", "Request-Id": id("req"), "Stripe-Version": API_VERSION })
      .end(JSON.stringify(body));

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = "";
    req.on("data", (c: Buffer) => {
      raw += c.toString();
    });
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://x");
      const method = req.method ?? "GET";
      // Test controls.
      if (url.pathname === "/__fail" && method === "POST") {
        failNext = Number(url.searchParams.get("n") ?? 1);
        return send(res, 200, { failNext });
      }
      if (url.pathname === "/__lose" && method === "POST") {
        lose.path = url.searchParams.get("path") ?? "";
        lose.n = Number(url.searchParams.get("n") ?? 1);
        return send(res, 200, lose);
      }
      if (url.pathname === "/__events" && method === "GET") {
        const pi = url.searchParams.get("payment_intent");
        return send(res, 200, pi ? deliveries.filter((d) => d.paymentIntent === pi) : deliveries);
      }
      if (url.pathname === "/__sign" && method === "POST") {
        const { payload, timestamp } = JSON.parse(raw) as { payload: string; timestamp?: number };
        return send(res, 200, { signature: stripeSignature(webhookSecret, payload, timestamp) });
      }
      if (url.pathname === "/__state" && method === "GET")
        return send(res, 200, { intents: [...intents.values()], refunds, calls, requests });
      if (url.pathname.startsWith("/__settle/") && method === "POST") {
        const pi = intents.get(url.pathname.slice("/__settle/".length));
        if (!pi || (pi.status !== "processing" && pi.status !== "requires_action")) return send(res, 409, { error: "not settleable" });
        if (url.searchParams.get("outcome") === "failed") {
          pi.status = "requires_payment_method";
          pi.last_payment_error = {
            type: "card_error",
            code: "card_declined",
            decline_code: "generic_decline",
            message: "Your card was declined.",
          };
          emit("payment_intent.payment_failed", pi, null);
        } else {
          succeed(pi);
          emit("payment_intent.succeeded", pi, null);
        }
        return send(res, 200, pi);
      }
      // The API. A "lost" answer: the call took effect, but the caller gets a 502 (it cannot know).
      const loseAnswer = (path: string) => {
        if (lose.n <= 0 || !path.includes(lose.path)) return false;
        lose.n--;
        return true;
      };
      if (!url.pathname.startsWith("/v1/")) return send(res, 404, { error: { type: "invalid_request_error", message: "Not found" } });
      calls.push(`${method} ${url.pathname}`);
      const idemHeader = req.headers["idempotency-key"];
      requests.push({ method, path: url.pathname, idempotencyKey: typeof idemHeader === "string" ? idemHeader : null });
      if (req.headers.authorization !== `Bearer ${secretKey}`)
        return send(res, 401, { error: { type: "invalid_request_error", message: "Invalid API Key provided." } });
      if (failNext > 0) {
        failNext--;
        return send(res, 500, { error: { type: "api_error", message: "An unknown error occurred (stand-in failure)." } });
      }
      const key = typeof req.headers["idempotency-key"] === "string" ? req.headers["idempotency-key"] : null;
      const request = `${method} ${url.pathname} ${[...formOf(raw)].sort().join("&")}`;
      if (key && method === "POST") {
        const saved = idempotent.get(key);
        if (saved) {
          if (saved.request !== request)
            return send(res, 400, {
              error: {
                type: "idempotency_error",
                message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}'.`,
              },
            });
          if (loseAnswer(url.pathname)) return send(res, 502, { error: { type: "api_error", message: "stand-in: answer lost" } });
          res.writeHead(saved.status, { "Content-Type": "application/json", "Idempotent-Replayed": "true", "Stripe-Version": API_VERSION });
          return res.end(saved.body);
        }
      }
      const [status, body] = api(method, url.pathname, formOf(raw), key);
      if (key && method === "POST" && status < 500) idempotent.set(key, { request, status, body: JSON.stringify(body) });
      return loseAnswer(url.pathname)
        ? send(res, 502, { error: { type: "api_error", message: "stand-in: answer lost" } })
        : send(res, status, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    secretKey,
    webhookSecret,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** vitest globalSetup (workers project): one stand-in for the run, handed over as `stripeStandin`. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const standin = await startStripeStandin({
    secretKey: process.env.STRIPE_SECRET_KEY ?? "sk_test_standin",
    webhookSecret: process.env.STRIPE_WEBHOOK_SECRET ?? "whsec_standin",
  });
  project.provide("stripeStandin", { url: standin.url, secretKey: standin.secretKey, webhookSecret: standin.webhookSecret });
  return standin.close;
}

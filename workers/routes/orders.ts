import { type Context, Hono } from "hono";
import { z } from "zod";
import { withLiveTicketStatus } from "../../lib/check-in";
import { type CheckoutDeps, checkout, getOrder } from "../../lib/checkout";
import { config } from "../../lib/config";
import { orderSchema, pendingOrderSchema } from "../../lib/order";
import { orderStores, shardNames } from "../../lib/order-store";
import { paymentProvider } from "../../lib/payment-methods";
import type { PaymentProvider } from "../../lib/payments";
import { ApiError } from "../../lib/problem";
import { shardFor } from "../../lib/shards";
import { issueTickets } from "../../lib/tickets";
import { formatTraceparent, type TraceContext } from "../../lib/trace";
import { storeOrder } from "../../queues/orders";
import { principalOf, requireKnownLocation } from "../http";
import { route } from "../route";
import type { AppEnv } from "../types";

/** POST /v1/orders body. */
const orderInput = z.strictObject({
  holdId: z.string().min(1).max(200),
  payment: z.strictObject({
    method: z.string().min(1).max(32).describe('"sandbox" (local default) or "card" (Stripe; only when the server has its key)'),
    token: z
      .string()
      .min(1)
      .max(200)
      .describe("sandbox: tok_ok, tok_decline…; card: a Stripe PaymentMethod (pm_…) or ConfirmationToken (ctoken_…) id"),
  }),
});

const orderParam = z.object({ id: z.string().max(200) });
const listQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(100).default(50) });

const traceOf = (t: TraceContext | undefined) => (t ? formatTraceparent(t) : undefined);

/** What checkout needs from this request: bindings, the provider, background work and the trace. */
export function checkoutDeps(c: Context<AppEnv>, provider: PaymentProvider): CheckoutDeps {
  return {
    inventory: c.env.INVENTORY,
    limits: c.env.LIMIT_LEDGER,
    provider,
    issueTickets: (o) => issueTickets(c.env.SIGNING_SECRET, o),
    traceparent: traceOf(c.get("trace")),
  };
}

/** Checkout and the buyer's orders. */
export const orders = new Hono<AppEnv>();

route(
  orders,
  {
    operationId: "createOrder",
    method: "post",
    path: "/v1/orders",
    summary: "Pay for a hold (buyer). Answers at once; storage and notifications follow through queues.",
    tags: ["orders"],
    auth: ["buyer"],
    rateLimit: "orders",
    idempotent: true,
    body: orderInput,
    responses: {
      201: { description: "Paid", schema: z.object({ order: orderSchema }), headers: ["Location"] },
      200: { description: "The hold was already paid: its order, as first answered", schema: z.object({ order: orderSchema }) },
      202: {
        description: "Card payment accepted by Stripe but not settled yet (order pending; its webhook settles it)",
        schema: z.object({ order: pendingOrderSchema }),
      },
    },
    errors: ["not_found", "payment_declined", "hold_expired", "event_cancelled", "overloaded"],
  },
  async (c, { json: input }) => {
    await requireKnownLocation(c, "hld", input.holdId);
    const provider = paymentProvider(input.payment.method, c.env);
    if (!provider)
      throw new ApiError(
        "validation_failed",
        input.payment.method === "card"
          ? "Card payments are not enabled on this server (no Stripe key is configured); use another payment method."
          : `Unknown payment method ${input.payment.method}.`,
        { errors: [{ path: "payment.method", message: input.payment.method === "card" ? "not enabled" : "unknown method" }] },
      );
    const deps = checkoutDeps(c, provider);
    if (config(c.env).CHECKOUT_WRITE === "sync") {
      // Comparison mode: the order is also written to its shard before the answer (no write-behind).
      const shards = shardNames(c.env);
      const stores = orderStores(c.env);
      deps.enqueueOrder = async (message) => {
        try {
          await storeOrder(message, {
            shards,
            store: stores,
            notifications: c.env.NOTIFICATIONS_QUEUE,
            analytics: c.env.ANALYTICS_QUEUE,
          });
        } finally {
          c.executionCtx.waitUntil(stores.close());
        }
      };
      deps.awaitHandOff = true;
    }
    const { order, created } = await checkout(deps, principalOf(c).sub, input);
    c.header("Location", `/v1/orders/${order.id}`);
    return c.json({ order }, order.status === "pending" ? 202 : created ? 201 : 200);
  },
);

// Rate-limited as a buyer's reads: each list also asks the Inventory DOs of its orders for ticket states.
route(
  orders,
  {
    operationId: "listOrders",
    method: "get",
    path: "/v1/orders",
    summary: "Your orders, newest first (from your order shard: complete once the queue has drained, usually within seconds)",
    tags: ["orders"],
    auth: ["buyer"],
    rateLimit: "reads",
    query: listQuery,
    responses: { 200: { description: "Orders", schema: z.object({ orders: z.array(orderSchema) }) } },
  },
  async (c, { query }) => {
    const userId = principalOf(c).sub;
    const shard = shardFor(userId, shardNames(c.env));
    const stores = orderStores(c.env);
    c.executionCtx.waitUntil(stores.close());
    const list = await withLiveTicketStatus(c.env.INVENTORY, await stores(shard).listOrders(userId, query.limit));
    return c.json({ orders: list }, 200, { "Cache-Control": "private, no-store" });
  },
);

route(
  orders,
  {
    operationId: "getOrder",
    method: "get",
    path: "/v1/orders/:id",
    summary: "One of your orders (readable as soon as POST /v1/orders answered)",
    tags: ["orders"],
    auth: ["buyer"],
    rateLimit: "reads",
    params: orderParam,
    responses: {
      200: {
        description: "The order (pending until its card payment settles)",
        schema: z.object({ order: z.union([orderSchema, pendingOrderSchema]) }),
      },
    },
    errors: ["not_found"],
  },
  async (c, { param: { id } }) => {
    await requireKnownLocation(c, "ord", id);
    const order = await getOrder({ inventory: c.env.INVENTORY, limits: c.env.LIMIT_LEDGER }, id, principalOf(c).sub);
    return c.json({ order }, 200, { "Cache-Control": "private, no-store" });
  },
);

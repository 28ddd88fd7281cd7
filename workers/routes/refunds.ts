import { Hono } from "hono";
import { z } from "zod";
import { catalogDb, invalidateEvent } from "../../lib/catalog";
import { eventSchema } from "../../lib/event-schema";
import { EVENT_ID } from "../../lib/ids";
import { orderSchema } from "../../lib/order";
import { ApiError } from "../../lib/problem";
import { cancelEvent, refundKeyOf, refundOrder } from "../../lib/refunds";
import { catalogDeps, principalOf } from "../http";
import { route } from "../route";
import type { AppEnv } from "../types";

/** POST /v1/orders/:id/refund body. */
const refundInput = z.strictObject({
  tickets: z
    .array(z.string().min(1).max(200))
    .min(1)
    .max(100)
    .optional()
    .describe("Ticket ids of the order to refund; all its tickets when omitted"),
  reason: z.string().trim().min(1).max(500).optional(),
});
/** POST /v1/events/:id/cancel body (optional: an empty body cancels without a reason). */
const cancelInput = z.strictObject({ reason: z.string().trim().min(1).max(500).optional() });
const orderParam = z.object({ id: z.string().max(200) });
const eventParam = z.object({ id: z.string().regex(EVENT_ID, "not an event id") });

/** Refunds and cancellation (the event's organizer or an admin). */
export const refunds = new Hono<AppEnv>();

route(
  refunds,
  {
    operationId: "refundOrder",
    method: "post",
    path: "/v1/orders/:id/refund",
    summary:
      "Refund some or all tickets of an order (the event's organizer or an admin): the tickets become void, their seats return to sale, the provider refunds their amount",
    tags: ["organizer"],
    auth: ["organizer", "admin"],
    idempotent: true,
    params: orderParam,
    body: refundInput,
    responses: { 200: { description: "The order after the refund", schema: z.object({ order: orderSchema }) } },
    errors: ["not_found", "not_refundable"],
  },
  async (c, { param: { id }, json }) => {
    const order = await refundOrder(
      { db: catalogDb(c.env.CATALOG_DB), inventory: c.env.INVENTORY },
      principalOf(c),
      id,
      json,
      await refundKeyOf(id, c.req.header("Idempotency-Key")),
    );
    return c.json({ order }, 200, { "Cache-Control": "no-store" });
  },
);

route(
  refunds,
  {
    operationId: "cancelEvent",
    method: "post",
    path: "/v1/events/:id/cancel",
    summary:
      "Cancel an event (its organizer or an admin; optional JSON body { reason }): sales stop at once and every paid order is refunded in the background",
    tags: ["organizer"],
    auth: ["organizer", "admin"],
    params: eventParam,
    responses: {
      202: { description: "Cancelled; refunds under way (progress in GET /v1/events/:id/stats)", schema: z.object({ event: eventSchema }) },
    },
    errors: ["not_found"],
  },
  async (c, { param: { id } }) => {
    const raw = (await c.req.text()).trim();
    let body: unknown = null;
    try {
      body = raw ? JSON.parse(raw) : {};
    } catch {
      // Not JSON: refused below.
    }
    const parsed = cancelInput.safeParse(body);
    if (!parsed.success)
      throw new ApiError("validation_failed", "The body, when sent, must be { reason? }.", {
        errors: parsed.error.issues.map((i) => ({ path: i.path.join(".") || "body", message: i.message })),
      });
    const doc = await cancelEvent(
      { ...catalogDeps(c), inventory: c.env.INVENTORY, notifications: c.env.NOTIFICATIONS_QUEUE },
      principalOf(c),
      id,
      parsed.data.reason,
    );
    await invalidateEvent(new URL(c.req.url).origin, id);
    return c.json({ event: doc }, 202);
  },
);

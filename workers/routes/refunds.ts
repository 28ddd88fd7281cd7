import { Hono } from "hono";
import { z } from "zod";
import { catalogDb, invalidateEvent } from "../../lib/catalog";
import { eventSchema } from "../../lib/event-schema";
import { EVENT_ID } from "../../lib/ids";
import { orderSchema } from "../../lib/order";
import { ApiError } from "../../lib/problem";
import { cancelEvent, refundKeyOf, refundOrder } from "../../lib/refunds";
import { catalogDeps, principalOf } from "../http";
import { auth } from "../middleware/auth";
import { idempotency } from "../middleware/idempotency";
import { validate } from "../middleware/validate";
import { describeRoute } from "../openapi";
import type { AppEnv } from "../types";

/** POST /v1/orders/:id/refund body. */
const refundInput = z.strictObject({
  tickets: z
    .array(z.string().min(1).max(100))
    .min(1)
    .max(100)
    .optional()
    .describe("Ticket ids of the order to refund; all its tickets when omitted"),
  reason: z.string().trim().min(1).max(500).optional(),
});
const cancelInput = z.strictObject({ reason: z.string().trim().min(1).max(500).optional() });
const orderParam = z.object({ id: z.string().max(200) });
const eventParam = z.object({ id: z.string().regex(EVENT_ID, "not an event id") });

/** Refunds and cancellation (the event's organizer or an admin). */
export const refunds = new Hono<AppEnv>();

describeRoute({
  operationId: "refundOrder",
  method: "post",
  path: "/v1/orders/:id/refund",
  summary:
    "Refund some or all tickets of an order (the event's organizer or an admin): the tickets become void and their seats return to sale",
  tags: ["organizer"],
  auth: ["organizer", "admin"],
  body: refundInput,
  headers: [{ name: "Idempotency-Key", description: "≤ 255 chars; a retry under the same key answers the same refund" }],
  responses: { 200: { description: "The order after the refund", schema: z.object({ order: orderSchema }) } },
  errors: ["not_found", "not_refundable", "idempotency_conflict", "idempotency_mismatch"],
});
refunds.post(
  "/v1/orders/:id/refund",
  auth("organizer", "admin"),
  idempotency(),
  validate("param", orderParam),
  validate("json", refundInput),
  async (c) => {
    const { id } = c.req.valid("param");
    const key = await refundKeyOf(id, c.req.header("Idempotency-Key"));
    const order = await refundOrder(
      { db: catalogDb(c.env.CATALOG_DB), inventory: c.env.INVENTORY },
      principalOf(c),
      id,
      c.req.valid("json"),
      key,
    );
    return c.json({ order }, 200, { "Cache-Control": "no-store" });
  },
);

describeRoute({
  operationId: "cancelEvent",
  method: "post",
  path: "/v1/events/:id/cancel",
  summary: "Cancel an event (its organizer or an admin): sales stop at once and every paid order is refunded in the background",
  tags: ["organizer"],
  auth: ["organizer", "admin"],
  body: cancelInput,
  responses: {
    202: { description: "Cancelled; refunds under way (progress in GET /v1/events/:id/stats)", schema: z.object({ event: eventSchema }) },
  },
  errors: ["not_found"],
});
refunds.post("/v1/events/:id/cancel", auth("organizer", "admin"), validate("param", eventParam), async (c) => {
  const { id } = c.req.valid("param");
  // The body is optional ({ reason }); an empty body cancels without one.
  const raw = (await c.req.text()).trim();
  let body: unknown = {};
  try {
    body = raw ? JSON.parse(raw) : {};
  } catch {
    body = null;
  }
  const parsed = cancelInput.safeParse(body);
  if (!parsed.success) {
    throw new ApiError("validation_failed", "The body must be { reason? }.", {
      errors: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
    });
  }
  const doc = await cancelEvent(
    { ...catalogDeps(c), inventory: c.env.INVENTORY, notifications: c.env.NOTIFICATIONS_QUEUE },
    principalOf(c),
    id,
    parsed.data.reason,
  );
  await invalidateEvent(new URL(c.req.url).origin, id);
  return c.json({ event: doc }, 202);
});

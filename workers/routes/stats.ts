import { desc } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { availabilitySnapshot } from "../../lib/availability";
import { catalogDb, eventDocFromRow, findEventRow } from "../../lib/catalog";
import { reconciliationRuns } from "../../lib/db/catalog-schema";
import { EVENT_ID } from "../../lib/ids";
import { orderStores, shardNames } from "../../lib/order-store";
import { ApiError } from "../../lib/problem";
import { reconcileEvent } from "../../lib/reconcile";
import { cancellationProgress } from "../../lib/refunds";
import { eventStats } from "../../lib/rollups";
import { principalOf } from "../http";
import { route } from "../route";
import type { AppEnv } from "../types";

const eventParam = z.object({ id: z.string().regex(EVENT_ID, "not an event id") });
const statsSchema = z.object({
  sold: z.number().int(),
  held: z.number().int(),
  available: z.number().int(),
  revenue: z.number().int(),
  currency: z.string(),
  ordersPerMinute: z.array(
    z.object({ minute: z.string(), orders: z.number().int(), tickets: z.number().int(), revenue: z.number().int() }),
  ),
  funnel: z.object({ joined: z.number().int(), admitted: z.number().int(), held: z.number().int(), paid: z.number().int() }),
  cancellation: z
    .object({ orders: z.number().int(), refunded: z.number().int() })
    .optional()
    .describe("A cancelled event's refunds: orders with valid tickets when it was cancelled, and how many are refunded (exact)"),
});
const reconciliationSchema = z.object({
  eventId: z.string(),
  soldInInventory: z.number().int(),
  storedInShards: z.number().int(),
  missing: z.array(z.string()),
  extra: z.array(z.string()),
  duplicated: z.array(z.string()),
  objectsAsked: z.number().int().describe("Inventory DOs asked for their sales (here: every DO of the event)"),
});

/** Organizer statistics and the reconciliation report. */
export const stats = new Hono<AppEnv>();

route(
  stats,
  {
    operationId: "getEventStats",
    method: "get",
    path: "/v1/events/:id/stats",
    summary: "Sales, funnel and orders per minute of an event (its organizer or an admin)",
    tags: ["organizer"],
    auth: ["organizer", "admin"],
    params: eventParam,
    responses: { 200: { description: "Stats (rollups lag by up to a minute; counts by about a second)", schema: statsSchema } },
    errors: ["not_found"],
  },
  async (c, { param: { id } }) => {
    const db = catalogDb(c.env.CATALOG_DB);
    const row = await findEventRow(db, id);
    const who = principalOf(c);
    if (!row || (who.role !== "admin" && row.organizerId !== who.sub)) throw new ApiError("not_found", `No event ${id}.`);
    const event = eventDocFromRow(row);
    const [snapshot, figures, progress] = await Promise.all([
      availabilitySnapshot({ rooms: c.env.WAITING_ROOM, waitUntil: (p) => c.executionCtx.waitUntil(p) }, event),
      eventStats(db, id),
      event.status === "cancelled" ? cancellationProgress(c.env.INVENTORY, event) : null,
    ]);
    // Joined and admitted are counted exactly by the WaitingRoom DO (no analytics message per join).
    if (event.waitingRoom.enabled) {
      const room = await c.env.WAITING_ROOM.get(c.env.WAITING_ROOM.idFromName(id)).funnel();
      figures.funnel.joined = room.joined;
      figures.funnel.admitted = room.admitted;
    }
    const sum = (k: "sold" | "held" | "available") => snapshot?.sections.reduce((n, s) => n + s[k], 0) ?? 0;
    return c.json(
      {
        sold: sum("sold"),
        held: sum("held"),
        available: snapshot ? sum("available") : event.capacity,
        revenue: figures.revenue,
        currency: event.currency,
        ordersPerMinute: figures.ordersPerMinute,
        funnel: figures.funnel,
        ...(progress ? { cancellation: { orders: progress.total, refunded: progress.refunded } } : {}),
      },
      200,
      { "Cache-Control": "private, max-age=5" },
    );
  },
);

route(
  stats,
  {
    operationId: "getReconciliation",
    method: "get",
    path: "/v1/admin/reconciliation",
    summary: "Discrepancies found by the cron reconciliation, newest first (admin)",
    tags: ["operations"],
    auth: ["admin"],
    responses: {
      200: {
        description: "Runs with discrepancies",
        schema: z.object({ runs: z.array(reconciliationSchema.omit({ objectsAsked: true }).extend({ ranAt: z.string() })) }),
      },
    },
  },
  async (c) => {
    const runs = await catalogDb(c.env.CATALOG_DB).select().from(reconciliationRuns).orderBy(desc(reconciliationRuns.ranAt)).limit(100);
    return c.json({ runs: runs.map(({ id: _id, ...r }) => r) }, 200, { "Cache-Control": "no-store" });
  },
);

const reconcileQuery = z.strictObject({
  graceMs: z.coerce
    .number()
    .int()
    .min(0)
    .max(86_400_000)
    .default(5 * 60_000)
    .describe("Orders younger than this are not judged (default 300000)"),
});
route(
  stats,
  {
    operationId: "reconcileEvent",
    method: "post",
    path: "/v1/admin/reconciliation/:id",
    summary: "Reconcile one event now: its Inventory DOs' sales against the order shards (admin)",
    tags: ["operations"],
    auth: ["admin"],
    params: eventParam,
    query: reconcileQuery,
    responses: { 200: { description: "Result", schema: reconciliationSchema } },
    errors: ["not_found"],
  },
  async (c, { param: { id }, query }) => {
    const row = await findEventRow(catalogDb(c.env.CATALOG_DB), id);
    if (!row) throw new ApiError("not_found", `No event ${id}.`);
    const stores = orderStores(c.env);
    c.executionCtx.waitUntil(stores.close());
    const result = await reconcileEvent({ inventory: c.env.INVENTORY, stores: shardNames(c.env).map(stores) }, eventDocFromRow(row), {
      graceMs: query.graceMs,
    });
    return c.json(result);
  },
);

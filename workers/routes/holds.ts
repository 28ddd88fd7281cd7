import { Hono } from "hono";
import { z } from "zod";
import { type AnalyticsEvent, sendAnalytics } from "../../lib/analytics-event";
import { availabilitySnapshot } from "../../lib/availability";
import { getEventDoc } from "../../lib/catalog";
import { Coalescer } from "../../lib/coalesce";
import { getHold, type HoldDeps, inventoryStub, placeHold, releaseHold } from "../../lib/holds";
import { EVENT_ID, SECTION_ID } from "../../lib/ids";
import { holdSchema } from "../../lib/inventory-types";
import { log } from "../../lib/log";
import { metric } from "../../lib/metric-catalog";
import { ApiError } from "../../lib/problem";
import { ReadThroughCache } from "../../lib/read-cache";
import { requireAdmission } from "../../lib/waiting-room";
import { principalOf, readContext, requireKnownLocation, SNAPSHOT_CACHE, sendCached } from "../http";
import { route } from "../route";
import type { AppEnv } from "../types";

/** POST /v1/events/:id/holds body. */
const holdInput = z
  .strictObject({
    sectionId: z.string().regex(SECTION_ID),
    seats: z.array(z.string().min(1).max(80)).min(1).max(50).optional().describe("Named seats (seated sections), ids from the seat map"),
    quantity: z.number().int().min(1).max(50).optional().describe("Places (GA) or best-available seats (seated); default 1"),
  })
  .refine((v) => !(v.seats && v.quantity !== undefined), { message: "send either seats or quantity", path: ["quantity"] });

const eventParam = z.object({ id: z.string().regex(EVENT_ID, "not an event id") });
const holdParam = z.object({ id: z.string().max(200) });
const seatsParam = z.object({ id: z.string().regex(EVENT_ID, "not an event id"), sectionId: z.string().regex(SECTION_ID) });

/** Holds and seat maps. */
export const holds = new Hono<AppEnv>();

/**
 * This isolate's funnel events, sent to the analytics queue in 50 ms batches (lib/coalesce.ts). Best
 * effort: a batch that cannot be queued is counted per event and logged, never failed to the request.
 */
const funnel = new Coalescer<{ queue: Queue; event: AnalyticsEvent }>(
  async (_key, items) => {
    try {
      await sendAnalytics(
        items[0]?.queue as Queue,
        items.map((i) => i.event),
      );
    } catch (err) {
      for (const { event } of items) metric.analyticsSendFailures.inc({ kind: event.kind });
      log.warn("analytics events not queued", { count: items.length, error: String(err) });
    }
  },
  { delayMs: 50 },
);

/** Hold dependencies of a request; funnel events are queued after the response (best effort, counted on failure). */
const deps = (env: Env, waitUntil: (p: Promise<unknown>) => void): HoldDeps => ({
  inventory: env.INVENTORY,
  limits: env.LIMIT_LEDGER,
  analytics: (e) => funnel.add("analytics", { queue: env.ANALYTICS_QUEUE, event: e }, waitUntil),
});

route(
  holds,
  {
    operationId: "createHold",
    method: "post",
    path: "/v1/events/:id/holds",
    summary: "Hold seats or places (buyer)",
    tags: ["holds"],
    auth: ["buyer"],
    rateLimit: "holds",
    idempotent: true,
    params: eventParam,
    body: holdInput,
    headers: [{ name: "X-Queue-Pass", description: "Required when the event's waiting room is on" }],
    responses: { 201: { description: "Held", schema: z.object({ hold: holdSchema }) } },
    errors: [
      "not_found",
      "seats_unavailable",
      "sold_out",
      "sale_not_started",
      "not_admitted",
      "limit_exceeded",
      "event_cancelled",
      "overloaded",
    ],
  },
  async (c, { param: { id }, json: input }) => {
    const event = await getEventDoc(readContext(c), id);
    if (!event) throw new ApiError("not_found", `No event ${id}.`);
    const userId = principalOf(c).sub;
    await requireAdmission(c.env.SIGNING_SECRET, event, userId, c.req.header("X-Queue-Pass"));
    const snapshot = await availabilitySnapshot({ rooms: c.env.WAITING_ROOM, waitUntil: (p) => c.executionCtx.waitUntil(p) }, event);
    const hold = await placeHold(
      deps(c.env, (p) => c.executionCtx.waitUntil(p)),
      event,
      userId,
      input,
      {
        availability: snapshot?.sections.find((s) => s.id === input.sectionId),
      },
    );
    c.header("Location", `/v1/holds/${hold.id}`);
    return c.json({ hold }, 201);
  },
);

route(
  holds,
  {
    operationId: "getHold",
    method: "get",
    path: "/v1/holds/:id",
    summary: "One of your holds",
    tags: ["holds"],
    auth: ["buyer"],
    rateLimit: "reads",
    params: holdParam,
    responses: { 200: { description: "The hold", schema: z.object({ hold: holdSchema }) } },
    errors: ["not_found"],
  },
  async (c, { param: { id } }) => {
    await requireKnownLocation(c, "hld", id);
    const hold = await getHold(
      deps(c.env, (p) => c.executionCtx.waitUntil(p)),
      id,
      principalOf(c).sub,
    );
    return c.json({ hold }, 200, { "Cache-Control": "no-store" });
  },
);

route(
  holds,
  {
    operationId: "releaseHold",
    method: "delete",
    path: "/v1/holds/:id",
    summary: "Release one of your holds; its seats return to sale",
    tags: ["holds"],
    auth: ["buyer"],
    rateLimit: "reads",
    idempotent: true,
    params: holdParam,
    responses: { 204: { description: "Released" } },
    errors: ["not_found", "hold_not_active"],
  },
  async (c, { param: { id } }) => {
    await requireKnownLocation(c, "hld", id);
    await releaseHold(
      deps(c.env, (p) => c.executionCtx.waitUntil(p)),
      id,
      principalOf(c).sub,
    );
    return c.body(null, 204);
  },
);

/** Seat maps: live state, cached for one second per isolate (coalesced), never computed per request. */
const seatMapCache = new ReadThroughCache({ ttlMs: 1_000, negativeTtlMs: 1_000, maxEntries: 5_000 });

const seatSchema = z.object({ id: z.string(), row: z.string(), number: z.number().int(), status: z.enum(["available", "held", "sold"]) });
route(
  holds,
  {
    operationId: "getSeatMap",
    method: "get",
    path: "/v1/events/:id/sections/:sectionId/seats",
    summary: "Seat map of a seated section (lags by up to a second)",
    tags: ["catalog"],
    params: seatsParam,
    responses: { 200: { description: "Seats", schema: z.object({ seats: z.array(seatSchema) }) }, 304: { description: "Not modified" } },
    errors: ["not_found"],
  },
  async (c, { param: { id, sectionId } }) => {
    const rc = readContext(c);
    const event = await getEventDoc(rc, id);
    const section = event?.sections.find((s) => s.id === sectionId);
    if (!event || !section) throw new ApiError("not_found", `No section ${sectionId} in event ${id}.`);
    if (section.kind !== "seated") throw new ApiError("not_found", "General admission sections have no seat map.");
    const read = await seatMapCache.get({
      key: `seats:${id}:${sectionId}`,
      cacheUrl: "",
      edgeTtlSeconds: 1,
      waitUntil: rc.waitUntil,
      kv: async () => null,
      origin: async () => {
        const seats = await inventoryStub(c.env.INVENTORY, { eventId: id, sectionId, shard: 0 }).seatMap();
        // A section nobody has touched yet has no DO state: every seat is available.
        const all = seats.length
          ? seats
          : (section.rows ?? []).flatMap((r) =>
              Array.from({ length: r.seats }, (_, i) => ({
                id: `${r.id}-${i + 1}`,
                row: r.id,
                number: i + 1,
                status: "available" as const,
              })),
            );
        return JSON.stringify({ seats: all });
      },
    });
    if (!read.value) throw new ApiError("not_found", "No seat map.");
    return sendCached(c, { value: read.value, layer: read.layer }, SNAPSHOT_CACHE);
  },
);

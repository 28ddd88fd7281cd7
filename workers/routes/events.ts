import { Hono } from "hono";
import { z } from "zod";
import { createEvent, invalidateEvent, kvKeys, readEvent, readEventList, updateEvent } from "../../lib/catalog";
import { createEventInput, eventSchema, eventSummarySchema, updateEventInput } from "../../lib/event-schema";
import { log } from "../../lib/log";
import { ApiError } from "../../lib/problem";
import { CATALOG_CACHE, CATALOG_ROUTES, catalogDeps, principalOf, readContext, sendCached } from "../http";
import { route } from "../route";
import type { AppEnv } from "../types";

const eventEnvelope = z.object({ event: eventSchema });
const idParam = z.object({ id: z.string().max(64) });

/** Organizer writes and public reads of the event catalog. */
export const events = new Hono<AppEnv>();

route(
  events,
  {
    operationId: "createEvent",
    method: "post",
    path: "/v1/events",
    summary:
      "Create an event (organizer). Accepts Idempotency-Key: a retry under the same key replays the first response, never a second event",
    tags: ["organizer"],
    auth: ["organizer", "admin"],
    idempotent: true,
    body: createEventInput,
    responses: { 201: { description: "Created", schema: eventEnvelope } },
  },
  async (c, { json }) => {
    const doc = await createEvent(catalogDeps(c), principalOf(c).sub, json);
    await invalidateEvent(new URL(c.req.url).origin, doc.id);
    c.header("Location", `/v1/events/${doc.id}`);
    return c.json({ event: doc }, 201);
  },
);

route(
  events,
  {
    operationId: "updateEvent",
    method: "patch",
    path: "/v1/events/:id",
    summary: "Change an event's name, venue or dates (its organizer or an admin)",
    tags: ["organizer"],
    auth: ["organizer", "admin"],
    params: idParam,
    body: updateEventInput,
    responses: { 200: { description: "Updated", schema: eventEnvelope } },
    errors: ["not_found"],
  },
  async (c, { param: { id }, json }) => {
    const doc = await updateEvent(catalogDeps(c), id, principalOf(c), json);
    await invalidateEvent(new URL(c.req.url).origin, id);
    return c.json({ event: doc });
  },
);

const ifNoneMatch = { name: "If-None-Match", description: "ETag of a copy you hold; 304 when unchanged" };

route(
  events,
  {
    operationId: "listEvents",
    method: "get",
    path: CATALOG_ROUTES.list,
    summary: "Upcoming events (cached)",
    tags: ["catalog"],
    headers: [ifNoneMatch],
    responses: {
      200: { description: "Events", schema: z.object({ events: z.array(eventSummarySchema) }) },
      304: { description: "Not modified" },
    },
  },
  async (c) => {
    const rc = readContext(c);
    try {
      const read = await readEventList(rc);
      if (!read.value) throw new Error("event list could not be built");
      return sendCached(c, { value: read.value, layer: read.layer }, CATALOG_CACHE);
    } catch (err) {
      // The primary list failed (KV and D1): serve the popular-events list the cron published.
      const popular = await rc.deps.kv.get(kvKeys.popular).catch(() => null);
      log.error("event list failed; serving popular events", {
        requestId: c.get("requestId"),
        error: String(err),
        fallback: popular !== null,
      });
      if (popular === null) throw new ApiError("overloaded", "The event list is temporarily unavailable.", { retryAfterSeconds: 5 });
      c.set("cacheStatus", "fallback:popular");
      return c.body(popular, 200, {
        "Content-Type": "application/json; charset=utf-8",
        "Cache-Control": "public, max-age=5",
        "X-Fallback": "popular-events",
      });
    }
  },
);

route(
  events,
  {
    operationId: "getEvent",
    method: "get",
    path: CATALOG_ROUTES.event,
    summary: "One event with its sections (cached)",
    tags: ["catalog"],
    headers: [ifNoneMatch],
    responses: { 200: { description: "The event", schema: eventEnvelope }, 304: { description: "Not modified" } },
    errors: ["not_found"],
  },
  async (c) => {
    const id = c.req.param("id") ?? "";
    const read = await readEvent(readContext(c), id);
    if (!read.value) throw new ApiError("not_found", `No event ${id}.`);
    return sendCached(c, { value: read.value, layer: read.layer }, CATALOG_CACHE);
  },
);

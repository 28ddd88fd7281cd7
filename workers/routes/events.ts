import { Hono } from "hono";
import { z } from "zod";
import { createEvent, invalidateEvent, kvKeys, readEvent, readEventList, updateEvent } from "../../lib/catalog";
import { createEventInput, eventSchema, eventSummarySchema, updateEventInput } from "../../lib/event-schema";
import { log } from "../../lib/log";
import { ApiError } from "../../lib/problem";
import { CATALOG_CACHE, CATALOG_ROUTES, catalogDeps, principalOf, readContext, sendCached } from "../http";
import { auth } from "../middleware/auth";
import { idempotency } from "../middleware/idempotency";
import { validate } from "../middleware/validate";
import { describeRoute } from "../openapi";
import type { AppEnv } from "../types";

const eventEnvelope = z.object({ event: eventSchema });
const idParam = z.object({ id: z.string().max(64) });

/** Organizer writes and public reads of the event catalog. */
export const events = new Hono<AppEnv>();

describeRoute({
  operationId: "createEvent",
  method: "post",
  path: "/v1/events",
  summary: "Create an event (organizer)",
  tags: ["organizer"],
  auth: ["organizer", "admin"],
  body: createEventInput,
  headers: [
    { name: "Idempotency-Key", description: "≤ 255 chars; a retry under the same key replays the first response, never a second event" },
  ],
  responses: { 201: { description: "Created", schema: eventEnvelope } },
  errors: ["payload_too_large", "unsupported_media_type", "idempotency_conflict", "idempotency_mismatch"],
});
events.post("/v1/events", auth("organizer", "admin"), idempotency(), validate("json", createEventInput), async (c) => {
  const doc = await createEvent(catalogDeps(c), principalOf(c).sub, c.req.valid("json"));
  await invalidateEvent(new URL(c.req.url).origin, doc.id);
  c.header("Location", `/v1/events/${doc.id}`);
  return c.json({ event: doc }, 201);
});

describeRoute({
  operationId: "updateEvent",
  method: "patch",
  path: "/v1/events/:id",
  summary: "Change an event's name, venue or dates (its organizer or an admin)",
  tags: ["organizer"],
  auth: ["organizer", "admin"],
  body: updateEventInput,
  responses: { 200: { description: "Updated", schema: eventEnvelope } },
  errors: ["not_found"],
});
events.patch("/v1/events/:id", auth("organizer", "admin"), validate("param", idParam), validate("json", updateEventInput), async (c) => {
  const { id } = c.req.valid("param");
  const doc = await updateEvent(catalogDeps(c), id, principalOf(c), c.req.valid("json"));
  await invalidateEvent(new URL(c.req.url).origin, id);
  return c.json({ event: doc });
});

describeRoute({
  operationId: "listEvents",
  method: "get",
  path: "/v1/events",
  summary: "Upcoming events (cached)",
  tags: ["catalog"],
  headers: [{ name: "If-None-Match", description: "ETag of a copy you hold; 304 when unchanged" }],
  responses: {
    200: { description: "Events", schema: z.object({ events: z.array(eventSummarySchema) }) },
    304: { description: "Not modified" },
  },
});
events.get(CATALOG_ROUTES.list, async (c) => {
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
});

describeRoute({
  operationId: "getEvent",
  method: "get",
  path: "/v1/events/:id",
  summary: "One event with its sections (cached)",
  tags: ["catalog"],
  headers: [{ name: "If-None-Match", description: "ETag of a copy you hold; 304 when unchanged" }],
  responses: { 200: { description: "The event", schema: eventEnvelope }, 304: { description: "Not modified" } },
  errors: ["not_found"],
});
events.get(CATALOG_ROUTES.event, async (c) => {
  const id = c.req.param("id");
  const read = await readEvent(readContext(c), id);
  if (!read.value) throw new ApiError("not_found", `No event ${id}.`);
  return sendCached(c, { value: read.value, layer: read.layer }, CATALOG_CACHE);
});

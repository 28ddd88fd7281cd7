import { z } from "zod";
import { SECTION_ID } from "./ids";

/**
 * Schemas of the organizer's event document (POST /v1/events) and of the public read models. The same
 * objects validate requests and generate /openapi.json.
 */

const isoDateTime = z.iso.datetime({ offset: true }).describe("ISO 8601 date-time");
const money = z.number().int().min(0).max(100_000_000).describe("Price in minor units of the event currency");
const sectionId = z.string().regex(SECTION_ID, "1-32 characters: letters, digits, '-' or '_'");

// Characters a display name may not carry: C0/C1 controls (NUL, newlines, escapes) and the bidirectional
// embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that make a name read differently
// from what it is ("Trojan Source"). Markup: a '<' starting a tag, comment or declaration.
const CONTROL = /\p{Cc}/u;
const BIDI_CONTROL = /[\u202A-\u202E\u2066-\u2069]/u;
const MARKUP = /<[A-Za-z!/?]/;

/**
 * A name shown to people: trimmed, `min`..`max` characters, well-formed UTF-16 (a lone surrogate would be
 * stored altered), no control or bidi-override characters, no HTML tags.
 */
const displayText = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine((v) => v.isWellFormed(), "must be valid Unicode (no lone surrogates)")
    .refine((v) => !CONTROL.test(v), "must not contain control characters")
    .refine((v) => !BIDI_CONTROL.test(v), "must not contain bidirectional override or isolate characters")
    .refine((v) => !MARKUP.test(v), "must be plain text, not HTML");

/** The hold lifetime when an event does not set one, in seconds. */
export const DEFAULT_EVENT_HOLD_SECONDS = 600;
/** Largest seated section (seats); larger venues split into more sections. */
const MAX_SEATED_SECTION_SEATS = 20_000;
/** Largest GA section. */
const MAX_GA_CAPACITY = 1_000_000;
/** Most capacity shards one GA section may have. */
const MAX_GA_SHARDS = 64;

/** Default number of GA capacity shards: one per 2,500 places, 1 to 16. */
export const defaultGaShards = (capacity: number): number => Math.min(16, Math.max(1, Math.ceil(capacity / 2_500)));
/**
 * Most Inventory Durable Objects one event may have (a seated section is one, a GA section one per shard):
 * bounds what one request can create and what reconciliation walks per event.
 */
const MAX_INVENTORY_OBJECTS = 256;

/** Inventory Durable Objects of an event's sections: one per seated section, one per GA shard. */
export const inventoryObjectCount = (sections: readonly { kind: string; capacity?: number; shards?: number }[]): number =>
  sections.reduce((n, s) => n + (s.kind === "ga" ? (s.shards ?? defaultGaShards(s.capacity ?? 0)) : 1), 0);

const seatedSectionInput = z.strictObject({
  id: sectionId,
  name: displayText(100),
  kind: z.literal("seated"),
  price: money,
  rows: z
    .array(z.strictObject({ id: z.string().regex(SECTION_ID), seats: z.number().int().min(1).max(500) }))
    .min(1)
    .max(200),
});

const gaSectionInput = z.strictObject({
  id: sectionId,
  name: displayText(100),
  kind: z.literal("ga"),
  price: money,
  capacity: z.number().int().min(1).max(MAX_GA_CAPACITY),
  shards: z.number().int().min(1).max(MAX_GA_SHARDS).optional(),
});

export const sectionInput = z.discriminatedUnion("kind", [seatedSectionInput, gaSectionInput]);

const waitingRoomInput = z.strictObject({
  enabled: z.boolean(),
  admitPerMinute: z.number().int().min(1).max(1_000_000).optional().describe("Admission ceiling; default 6000/min"),
});

/** Default admission ceiling for a waiting room, per minute. */
export const DEFAULT_ADMIT_PER_MINUTE = 6_000;

/** POST /v1/events body. Unknown fields are refused. */
export const createEventInput = z
  .strictObject({
    name: displayText(200),
    venue: displayText(200),
    startsAt: isoDateTime,
    saleStartsAt: isoDateTime,
    currency: z.string().regex(/^[A-Z]{3}$/, "ISO 4217 code, e.g. EUR"),
    perCustomerLimit: z.number().int().min(1).max(50),
    holdSeconds: z.number().int().min(30).max(3_600).optional().describe(`Default ${DEFAULT_EVENT_HOLD_SECONDS}`),
    waitingRoom: waitingRoomInput.optional(),
    sections: z.array(sectionInput).min(1).max(100),
  })
  .superRefine((ev, ctx) => {
    if (Date.parse(ev.saleStartsAt) >= Date.parse(ev.startsAt))
      ctx.addIssue({ code: "custom", path: ["saleStartsAt"], message: "saleStartsAt must be before startsAt" });
    if (Date.parse(ev.startsAt) < Date.now() - 60_000)
      ctx.addIssue({ code: "custom", path: ["startsAt"], message: "startsAt must be in the future" });
    const ids = new Set<string>();
    ev.sections.forEach((s, i) => {
      if (ids.has(s.id)) ctx.addIssue({ code: "custom", path: ["sections", i, "id"], message: `duplicate section id ${s.id}` });
      ids.add(s.id);
      if (s.kind === "seated") {
        const rows = new Set<string>();
        let seats = 0;
        s.rows.forEach((r, j) => {
          if (rows.has(r.id)) ctx.addIssue({ code: "custom", path: ["sections", i, "rows", j, "id"], message: `duplicate row id ${r.id}` });
          rows.add(r.id);
          seats += r.seats;
        });
        if (seats > MAX_SEATED_SECTION_SEATS)
          ctx.addIssue({
            code: "custom",
            path: ["sections", i, "rows"],
            message: `a seated section holds at most ${MAX_SEATED_SECTION_SEATS} seats`,
          });
      } else if (s.shards !== undefined && s.shards > s.capacity) {
        ctx.addIssue({ code: "custom", path: ["sections", i, "shards"], message: "shards may not exceed capacity" });
      }
    });
    const objects = inventoryObjectCount(ev.sections);
    if (objects > MAX_INVENTORY_OBJECTS)
      ctx.addIssue({
        code: "custom",
        path: ["sections"],
        message: `${objects} inventory objects (one per seated section, one per GA shard); at most ${MAX_INVENTORY_OBJECTS}`,
      });
  });
export type CreateEventInput = z.output<typeof createEventInput>;

/** PATCH /v1/events/:id body: the fields that may change after creation. Sections never change. */
export const updateEventInput = z
  .strictObject({
    name: displayText(200).optional(),
    venue: displayText(200).optional(),
    startsAt: isoDateTime.optional(),
    saleStartsAt: isoDateTime.optional(),
  })
  .refine((v) => Object.keys(v).length > 0, { message: "nothing to change" });
export type UpdateEventInput = z.output<typeof updateEventInput>;

/** A section as stored and served. */
const sectionSchema = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.enum(["seated", "ga"]),
  price: z.number().int(),
  capacity: z.number().int(),
  rows: z.array(z.object({ id: z.string(), seats: z.number().int() })).optional(),
  shards: z.number().int().optional(),
});
export type Section = z.output<typeof sectionSchema>;

/** GET /v1/events/:id → `event`. */
export const eventSchema = z.object({
  id: z.string(),
  name: z.string(),
  venue: z.string(),
  startsAt: z.string(),
  saleStartsAt: z.string(),
  currency: z.string(),
  perCustomerLimit: z.number().int(),
  holdSeconds: z.number().int(),
  waitingRoom: z.object({ enabled: z.boolean(), admitPerMinute: z.number().int() }),
  minPrice: z.number().int(),
  capacity: z.number().int(),
  sections: z.array(sectionSchema),
  /** `cancelled` after POST /v1/events/:id/cancel (holds and orders answer 409 event_cancelled). */
  status: z.enum(["scheduled", "cancelled"]),
  version: z.number().int(),
  updatedAt: z.string(),
});
export type EventDoc = z.output<typeof eventSchema>;

/** One row of GET /v1/events. */
export const eventSummarySchema = z.object({
  id: z.string(),
  name: z.string(),
  venue: z.string(),
  startsAt: z.string(),
  saleStartsAt: z.string(),
  minPrice: z.number().int(),
  currency: z.string(),
  soldOut: z.boolean(),
});
export type EventSummary = z.output<typeof eventSummarySchema>;

/** Seated capacity of a section input. */
export const sectionCapacity = (s: z.output<typeof sectionInput>): number =>
  s.kind === "ga" ? s.capacity : s.rows.reduce((n, r) => n + r.seats, 0);

/** The event fields the Durable Objects need (an Inventory DO forwards them with its reports to the room). */
export type EventRouting = Pick<EventDoc, "id" | "sections" | "waitingRoom" | "saleStartsAt">;

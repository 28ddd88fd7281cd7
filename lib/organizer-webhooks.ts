import { z } from "zod";
import { catalogDb, findEventRow } from "./catalog";
import { hmacSha256 } from "./hmac";
import { log } from "./log";
import { b64url } from "./signing";
import type { WebhookPublisher } from "./webhooks";

/**
 * Webhooks per organizer. An organizer sets one endpoint (`PUT /v1/organizers/me/webhook`) with the event
 * types it wants; Breakwater answers a fresh signing secret once. Each delivery is a JSON body
 * `{ id, type, createdAt, eventId, data }` signed like Stripe signs its own (`Breakwater-Signature:
 * t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`), published through QStash, which retries it
 * and drops repeats of the same delivery id.
 *
 * Producers (checkout's follow-ups, refunds, check-ins, cancellation, the sold-out flag) queue an
 * {@link OrganizerEventMessage} on the notifications queue with {@link sendOrganizerEvent}; the
 * notifications consumer looks up the event's organizer and endpoint and delivers it.
 *
 * The settings live in KV (`organizer-webhook:<organizerId>`): read on every delivery from any location, written
 * rarely. A change reaches every location within KV's propagation time (up to about a minute).
 */

/** The event types an organizer can subscribe to. */
export const ORGANIZER_EVENT_TYPES = ["order.paid", "order.refunded", "ticket.checked_in", "event.sold_out", "event.cancelled"] as const;
const organizerEventType = z.enum(ORGANIZER_EVENT_TYPES);

/** `PUT /v1/organizers/me/webhook` body. */
export const organizerWebhookInput = z.strictObject({
  url: z
    .url({ protocol: /^https$/, hostname: z.regexes.domain })
    .max(2048)
    .describe("https endpoint of the organizer (QStash delivers to it from the internet)"),
  events: z
    .array(organizerEventType)
    .min(1)
    .max(ORGANIZER_EVENT_TYPES.length)
    .refine((e) => new Set(e).size === e.length, "an event type is named twice"),
});
export type OrganizerWebhookInput = z.output<typeof organizerWebhookInput>;

/** The stored settings (the secret is answered once, when it is made). */
const organizerWebhookSchema = z.object({
  url: z.string(),
  events: z.array(organizerEventType),
  secret: z.string(),
  updatedAt: z.string(),
});
export type OrganizerWebhook = z.output<typeof organizerWebhookSchema>;

const kvKey = (organizerId: string): string => `organizer-webhook:${organizerId}`;

/** Stores an organizer's endpoint with a new signing secret (every PUT rotates it). */
export async function saveOrganizerWebhook(kv: KVNamespace, organizerId: string, input: OrganizerWebhookInput): Promise<OrganizerWebhook> {
  const hook: OrganizerWebhook = {
    url: input.url,
    events: input.events,
    secret: `whsec_${b64url(crypto.getRandomValues(new Uint8Array(32)))}`,
    updatedAt: new Date().toISOString(),
  };
  await kv.put(kvKey(organizerId), JSON.stringify(hook));
  return hook;
}

/** An organizer's endpoint, or null when none is set (or the stored value is unreadable: logged). */
export async function findOrganizerWebhook(kv: KVNamespace, organizerId: string): Promise<OrganizerWebhook | null> {
  const raw = await kv.get(kvKey(organizerId), "json");
  if (raw === null) return null;
  const parsed = organizerWebhookSchema.safeParse(raw);
  if (!parsed.success) {
    log.error("organizer webhook settings unreadable", { organizerId });
    return null;
  }
  return parsed.data;
}

/** One event for an organizer, as producers queue it on the notifications queue. */
export const organizerEventMessage = z.object({
  v: z.literal(1),
  kind: z.literal("organizer.event"),
  /** Delivery id: stable per occurrence (e.g. `order.refunded:<orderId>:<refund key>`), so repeats deliver once. */
  id: z.string().min(1).max(300),
  type: organizerEventType,
  /** The Breakwater event it concerns (its organizer receives it). */
  eventId: z.string().min(1).max(200),
  /** Known to some producers; otherwise looked up from the catalog by `eventId`. */
  organizerId: z.string().min(1).optional(),
  occurredAt: z.iso.datetime({ offset: true }),
  /** The type's payload (order id, totals, ticket id…). */
  data: z.record(z.string(), z.unknown()),
  traceparent: z.string().optional(),
});
export type OrganizerEventMessage = z.output<typeof organizerEventMessage>;

/** Queues organizer events on the notifications queue (validated first: a bad producer fails loudly). */
export async function sendOrganizerEvent(queue: Queue, events: OrganizerEventMessage[]): Promise<void> {
  if (!events.length) return;
  await queue.sendBatch(events.map((e) => ({ body: organizerEventMessage.parse(e), contentType: "json" as const })));
}

/** The delivered body of an event. */
const deliveryBody = (m: OrganizerEventMessage): string =>
  JSON.stringify({ id: m.id, type: m.type, createdAt: m.occurredAt, eventId: m.eventId, data: m.data });

/** `Breakwater-Signature` of `body` at `timestamp` (unix seconds). */
async function signDelivery(secret: string, body: string, timestamp = Math.floor(Date.now() / 1000)): Promise<string> {
  const mac = await hmacSha256(secret, `${timestamp}.${body}`);
  return `t=${timestamp},v1=${[...mac].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** What delivering needs: the settings store, the event → organizer lookup and the QStash publisher. */
export interface OrganizerDeliveryDeps {
  kv: KVNamespace;
  organizerOf: (eventId: string) => Promise<string | null>;
  publisher: WebhookPublisher;
  /** An organizer's webhook settings; default: read from `kv` each time ({@link findOrganizerWebhook}). */
  webhookOf?: (organizerId: string) => Promise<OrganizerWebhook | null>;
}

/**
 * `deps` reading each organizer's webhook settings once (a consumer batch: one KV read per organizer
 * instead of one per message). A failed read is not kept.
 */
export function withWebhooksReadOnce(deps: OrganizerDeliveryDeps): OrganizerDeliveryDeps {
  const read = new Map<string, Promise<OrganizerWebhook | null>>();
  return {
    ...deps,
    webhookOf: (organizerId) => {
      let hook = read.get(organizerId);
      if (!hook) {
        hook = findOrganizerWebhook(deps.kv, organizerId);
        read.set(organizerId, hook);
        hook.catch(() => read.delete(organizerId));
      }
      return hook;
    },
  };
}

/**
 * Delivers one event to its organizer's endpoint when the organizer subscribed to its type. Returns what
 * happened; a publish failure throws (the consumer retries the message with backoff).
 */
export async function deliverOrganizerEvent(
  deps: OrganizerDeliveryDeps,
  m: OrganizerEventMessage,
): Promise<"delivered" | "not_subscribed" | "no_organizer"> {
  const organizerId = m.organizerId ?? (await deps.organizerOf(m.eventId));
  if (!organizerId) return "no_organizer";
  const hook = await (deps.webhookOf ?? ((id: string) => findOrganizerWebhook(deps.kv, id)))(organizerId);
  if (!hook?.events.includes(m.type)) return "not_subscribed";
  const body = deliveryBody(m);
  // Deduplicated per organizer and delivery (the deployment-wide URL uses the bare delivery id).
  await deps.publisher.publish(hook.url, body, `${organizerId}:${m.id}`, {
    "Breakwater-Signature": await signDelivery(hook.secret, body),
    "Breakwater-Event": m.type,
    "Breakwater-Delivery": m.id,
  });
  return "delivered";
}

/**
 * The organizer of an event, from the catalog (an event's organizer never changes, so each isolate
 * remembers what it found; unknown events are not remembered).
 */
export function catalogOrganizerOf(d1: D1Database): (eventId: string) => Promise<string | null> {
  const db = catalogDb(d1);
  return async (eventId) => {
    const known = organizers.get(eventId);
    if (known) return known;
    const row = await findEventRow(db, eventId);
    if (!row) return null;
    if (organizers.size >= 10_000) organizers.clear();
    organizers.set(eventId, row.organizerId);
    return row.organizerId;
  };
}
const organizers = new Map<string, string>();

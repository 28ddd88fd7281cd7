import { z } from "zod";
import { chunk } from "./chunk";

/** Kinds of analytics events (the funnel and the sales). */
const ANALYTICS_KINDS = [
  "queue.joined",
  "queue.admitted",
  "hold.created",
  "hold.expired",
  "hold.released",
  "order.paid",
  "order.refunded",
] as const;

/**
 * One raw analytics event, the message of the analytics queue. `id` makes it idempotent (a redelivery or
 * a replay is the same row): producers pass the natural id of what happened (`hold.created:<holdId>`,
 * `order.paid:<orderId>`); without one it is derived from the event's fields, so only an identical event
 * (same kind, event, user and millisecond) collapses into one row.
 */
export const analyticsEventSchema = z
  .object({
    id: z.string().min(1).max(300).optional(),
    kind: z.enum(ANALYTICS_KINDS),
    eventId: z.string().min(1).max(200),
    at: z.iso.datetime({ offset: true }),
    userId: z.string().max(200).optional(),
    quantity: z.number().int().nonnegative().default(0),
    amount: z.number().int().nonnegative().default(0),
  })
  .transform((e) => ({ ...e, id: e.id ?? `${e.kind}:${e.eventId}:${e.userId ?? ""}:${e.at}` }));
export type AnalyticsEvent = z.output<typeof analyticsEventSchema>;
/** What a producer writes (id, quantity and amount optional). */
export type AnalyticsEventInput = z.input<typeof analyticsEventSchema>;

/** Builds (and validates) an analytics event. */
export const analyticsEvent = (e: AnalyticsEventInput): AnalyticsEvent => analyticsEventSchema.parse(e);

/** The Queues limit of messages per `sendBatch`. */
const SEND_BATCH_MAX = 100;
/**
 * Sends one analytics event or several (validated first, so a bad event throws here and not in the
 * consumer; sent in batches of at most 100, the Queues limit). Failures are the caller's to handle:
 * analytics are best effort and must never fail the request that produced them.
 */
export async function sendAnalytics(queue: Queue, events: AnalyticsEventInput | readonly AnalyticsEventInput[]): Promise<void> {
  const list = (Array.isArray(events) ? events : [events]) as readonly AnalyticsEventInput[];
  const bodies = list.map((e) => analyticsEventSchema.parse(e));
  for (const part of chunk(bodies, SEND_BATCH_MAX)) await queue.sendBatch(part.map((body) => ({ body, contentType: "json" as const })));
}

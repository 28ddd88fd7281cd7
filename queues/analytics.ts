import { drizzle } from "drizzle-orm/d1";
import { z } from "zod";
import { countingD1 } from "../lib/d1-counter";
import { analyticsEvents } from "../lib/db/catalog-schema";
import { chunk } from "../lib/order-store";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryLater } from "./consume";

/** Kinds of analytics events (the funnel and the sales). */
export const ANALYTICS_KINDS = ["queue.joined", "queue.admitted", "hold.created", "hold.expired", "hold.released", "order.paid"] as const;

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
/** Rows per INSERT: D1 binds at most 100 parameters per statement, a row binds 7. */
const ROWS_PER_STATEMENT = 14;

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

/**
 * Appends a batch of raw events to the catalog D1 (`analytics_events`) in one `batch()` (one
 * transaction); redeliveries and replays are ignored by primary key. Invalid messages become dead letters
 * at once; a failed write retries the valid ones with exponential backoff and full jitter (after
 * max_retries they land in the dead-letter queue).
 */
export async function consumeAnalytics(batch: MessageBatch, deps: { catalog: D1Database; deadLetter: DeadLetterSink }): Promise<void> {
  const db = drizzle(countingD1(deps.catalog, "catalog"));
  const valid: { msg: Message; e: AnalyticsEvent }[] = [];
  for (const msg of batch.messages) {
    const e = await parseOrDeadLetter(analyticsEventSchema, batch.queue, msg, deps.deadLetter);
    if (e) valid.push({ msg, e });
  }
  const rows = valid.map(({ e }) => ({
    id: e.id,
    kind: e.kind,
    eventId: e.eventId,
    at: e.at,
    userId: e.userId ?? null,
    quantity: e.quantity,
    amount: e.amount,
  }));
  const [first, ...rest] = chunk(rows, ROWS_PER_STATEMENT).map((part) => db.insert(analyticsEvents).values(part).onConflictDoNothing());
  if (!first) return;
  try {
    await db.batch([first, ...rest]);
  } catch (err) {
    for (const { msg, e } of valid) retryLater(batch.queue, msg, { analyticsId: e.id }, err);
    return;
  }
  for (const { msg } of valid) acknowledge(batch.queue, msg);
}

import { drizzle } from "drizzle-orm/d1";
import { z } from "zod";
import { queueRetryDelaySeconds } from "../lib/backoff";
import { countingD1 } from "../lib/d1-counter";
import { analyticsEvents } from "../lib/db/catalog-schema";
import { metrics } from "../lib/metrics";
import type { DeadLetterSink } from "./consume";
import { parseOrDeadLetter } from "./consume";

/** Kinds of analytics events (the funnel and the sales). */
export const ANALYTICS_KINDS = ["queue.joined", "queue.admitted", "hold.created", "hold.expired", "hold.released", "order.paid"] as const;

/** One raw analytics event; `id` makes it idempotent (a replay is the same row). */
export const analyticsEventSchema = z.object({
  id: z.string().min(1).max(300),
  kind: z.enum(ANALYTICS_KINDS),
  eventId: z.string().min(1),
  at: z.iso.datetime({ offset: true }),
  userId: z.string().optional(),
  quantity: z.number().int().nonnegative().default(0),
  amount: z.number().int().nonnegative().default(0),
});
export type AnalyticsEvent = z.output<typeof analyticsEventSchema>;

/** Builds (and validates) an analytics event. */
export const analyticsEvent = (e: z.input<typeof analyticsEventSchema>): AnalyticsEvent => analyticsEventSchema.parse(e);

/** Sends analytics events (in batches of at most 100, the Queues limit). Failures are the caller's to handle. */
export async function sendAnalytics(queue: Queue, events: AnalyticsEvent[]): Promise<void> {
  for (let i = 0; i < events.length; i += 100)
    await queue.sendBatch(events.slice(i, i + 100).map((e) => ({ body: analyticsEventSchema.parse(e), contentType: "json" as const })));
}

/** Appends a batch of raw events to the catalog D1 in one `batch()`; replays are ignored by primary key. */
export async function consumeAnalytics(batch: MessageBatch, deps: { catalog: D1Database; deadLetter: DeadLetterSink }): Promise<void> {
  const db = drizzle(countingD1(deps.catalog, "catalog"));
  const valid: { msg: Message; e: AnalyticsEvent }[] = [];
  for (const msg of batch.messages) {
    const e = await parseOrDeadLetter(analyticsEventSchema, batch.queue, msg, deps.deadLetter);
    if (e) valid.push({ msg, e });
  }
  if (!valid.length) return;
  try {
    const rows = valid.map(({ e }) => ({
      id: e.id,
      kind: e.kind,
      eventId: e.eventId,
      at: e.at,
      userId: e.userId ?? null,
      quantity: e.quantity,
      amount: e.amount,
    }));
    const stmts = [];
    for (let i = 0; i < rows.length; i += 10)
      stmts.push(
        db
          .insert(analyticsEvents)
          .values(rows.slice(i, i + 10))
          .onConflictDoNothing(),
      );
    await db.batch(stmts as [(typeof stmts)[number], ...(typeof stmts)[number][]]);
    for (const { msg } of valid) msg.ack();
    metrics.inc("breakwater_queue_messages_total", { queue: "analytics", action: "acked" }, valid.length, "Queue messages by outcome");
  } catch (err) {
    console.error(JSON.stringify({ level: "error", msg: "analytics insert failed; retrying", count: valid.length, error: String(err) }));
    for (const { msg } of valid) msg.retry({ delaySeconds: queueRetryDelaySeconds(msg.attempts) });
    metrics.inc("breakwater_queue_messages_total", { queue: "analytics", action: "retried" }, valid.length, "Queue messages by outcome");
  }
}

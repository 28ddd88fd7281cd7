import { drizzle } from "drizzle-orm/d1";
import { type AnalyticsEvent, analyticsEventSchema } from "../lib/analytics-event";
import { chunk } from "../lib/chunk";
import { countingD1 } from "../lib/d1-counter";
import { analyticsEvents } from "../lib/db/catalog-schema";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryLater } from "./consume";

/** Rows per INSERT: D1 binds at most 100 parameters per statement, a row binds 7. */
const ROWS_PER_STATEMENT = 14;

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

import { type AnalyticsEvent, analyticsEventSchema } from "../lib/analytics-event";
import { countingD1 } from "../lib/d1-counter";
import { insertJsonRows } from "../lib/d1-json-rows";
import { analyticsEvents as a } from "../lib/db/catalog-schema";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryLater } from "./consume";

/** The batch's events in one statement (lib/d1-json-rows.ts). */
const INSERT_EVENTS = insertJsonRows(a, ["id", "kind", "eventId", "at", "userId", "quantity", "amount"]);

/**
 * Appends a batch of raw events to the catalog D1 (`analytics_events`) in one statement; redeliveries and replays are ignored by primary key. Invalid messages become dead letters
 * at once; a failed write retries the valid ones with exponential backoff and full jitter (after
 * max_retries they land in the dead-letter queue).
 */
export async function consumeAnalytics(batch: MessageBatch, deps: { catalog: D1Database; deadLetter: DeadLetterSink }): Promise<void> {
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
  if (!rows.length) return;
  try {
    await countingD1(deps.catalog, "catalog").prepare(INSERT_EVENTS).bind(JSON.stringify(rows)).run();
  } catch (err) {
    for (const { msg, e } of valid) retryLater(batch.queue, msg, { analyticsId: e.id }, err);
    return;
  }
  for (const { msg } of valid) acknowledge(batch.queue, msg);
}

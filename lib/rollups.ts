import { and, desc, eq, gte, sql } from "drizzle-orm";
import type { CatalogDb } from "./catalog";
import { analyticsMinute } from "./db/catalog-schema";

/**
 * Per-minute rollups of the raw analytics events (catalog D1). Each run recomputes whole minutes from
 * the raw rows (an upsert per event/minute/kind), so it is idempotent and picks up events that arrived
 * late through the queue: the window reaches back `lookbackMinutes`.
 */

/** ISO minute of a time: `2026-11-24T10:03`. */
export const minuteOf = (t: Date | number | string): string => new Date(t).toISOString().slice(0, 16);

/** Recomputes the rollups of the minutes in [from, to). Returns rows written. */
export async function rollUp(d1: D1Database, from: Date, to: Date): Promise<number> {
  const res = await d1
    .prepare(
      `INSERT INTO analytics_minute (event_id, minute, kind, count, quantity, amount)
       SELECT event_id, substr(at, 1, 16) AS minute, kind, count(*), coalesce(sum(quantity), 0), coalesce(sum(amount), 0)
       FROM analytics_events WHERE at >= ? AND at < ?
       GROUP BY event_id, substr(at, 1, 16), kind
       ON CONFLICT (event_id, minute, kind) DO UPDATE SET count = excluded.count, quantity = excluded.quantity, amount = excluded.amount`,
    )
    .bind(from.toISOString(), to.toISOString())
    .run();
  return res.meta.changes ?? 0;
}

/** One minute of an event's sales. */
interface MinuteFigures {
  minute: string;
  orders: number;
  tickets: number;
  revenue: number;
}

/** The funnel and sales of an event from its rollups. */
export interface EventStats {
  revenue: number;
  ordersPerMinute: MinuteFigures[];
  funnel: { joined: number; admitted: number; held: number; paid: number };
}

/** Totals per kind for an event, and the last `minutes` minutes of orders. */
export async function eventStats(db: CatalogDb, eventId: string, minutes = 60, now = new Date()): Promise<EventStats> {
  const totals = await db
    .select({
      kind: analyticsMinute.kind,
      count: sql<number>`sum(${analyticsMinute.count})`,
      amount: sql<number>`sum(${analyticsMinute.amount})`,
    })
    .from(analyticsMinute)
    .where(eq(analyticsMinute.eventId, eventId))
    .groupBy(analyticsMinute.kind);
  const by = (k: string) => totals.find((t) => t.kind === k);
  const since = minuteOf(now.getTime() - minutes * 60_000);
  const recent = await db
    .select()
    .from(analyticsMinute)
    .where(and(eq(analyticsMinute.eventId, eventId), eq(analyticsMinute.kind, "order.paid"), gte(analyticsMinute.minute, since)))
    .orderBy(desc(analyticsMinute.minute));
  return {
    // Refunds (organizer refunds, cancellations) give money back: revenue is what was kept.
    revenue: (by("order.paid")?.amount ?? 0) - (by("order.refunded")?.amount ?? 0),
    ordersPerMinute: recent.reverse().map((r) => ({ minute: r.minute, orders: r.count, tickets: r.quantity, revenue: r.amount })),
    funnel: {
      joined: by("queue.joined")?.count ?? 0,
      admitted: by("queue.admitted")?.count ?? 0,
      held: by("hold.created")?.count ?? 0,
      paid: by("order.paid")?.count ?? 0,
    },
  };
}

/** Activity score per event over the last hour (holds + 3 × orders), for the popular-events list. */
export async function activityScores(db: CatalogDb, now = new Date()): Promise<Map<string, number>> {
  const since = minuteOf(now.getTime() - 60 * 60_000);
  const rows = await db
    .select({
      eventId: analyticsMinute.eventId,
      score: sql<number>`sum(case when ${analyticsMinute.kind} = 'order.paid' then 3 * ${analyticsMinute.count} else ${analyticsMinute.count} end)`,
    })
    .from(analyticsMinute)
    .where(gte(analyticsMinute.minute, since))
    .groupBy(analyticsMinute.eventId);
  return new Map(rows.map((r) => [r.eventId, r.score]));
}

import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/**
 * The catalog D1 database: events as the organizer created them (source of truth for the read models in
 * KV) and operational records (dead letters). Migrations: `npm run db:generate` → migrations/d1/catalog.
 */
export const events = sqliteTable(
  "events",
  {
    id: text("id").primaryKey(),
    organizerId: text("organizer_id").notNull(),
    name: text("name").notNull(),
    venue: text("venue").notNull(),
    startsAt: text("starts_at").notNull(),
    saleStartsAt: text("sale_starts_at").notNull(),
    currency: text("currency").notNull(),
    perCustomerLimit: integer("per_customer_limit").notNull(),
    holdSeconds: integer("hold_seconds").notNull(),
    waitingRoomEnabled: integer("waiting_room_enabled", { mode: "boolean" }).notNull(),
    admitPerMinute: integer("admit_per_minute").notNull(),
    /** JSON array of sections (immutable after creation). */
    sections: text("sections", { mode: "json" }).notNull(),
    minPrice: integer("min_price").notNull(),
    capacity: integer("capacity").notNull(),
    soldOut: integer("sold_out", { mode: "boolean" }).notNull().default(false),
    /** `scheduled`, or `cancelled` (POST /v1/events/:id/cancel: no more holds or orders; paid orders refunded). */
    status: text("status", { enum: ["scheduled", "cancelled"] })
      .notNull()
      .default("scheduled"),
    version: integer("version").notNull().default(1),
    createdAt: text("created_at").notNull(),
    updatedAt: text("updated_at").notNull(),
  },
  (t) => [index("events_starts_at_idx").on(t.startsAt), index("events_organizer_idx").on(t.organizerId)],
);
export type EventRow = typeof events.$inferSelect;
export type NewEventRow = typeof events.$inferInsert;

/** Messages that exhausted their retries, as received from a dead-letter queue. */
export const deadLetters = sqliteTable(
  "dead_letters",
  {
    id: text("id").primaryKey(),
    queue: text("queue").notNull(),
    body: text("body", { mode: "json" }).notNull(),
    attempts: integer("attempts").notNull(),
    firstFailedAt: text("first_failed_at").notNull(),
    lastError: text("last_error"),
    status: text("status", { enum: ["dead", "replayed"] })
      .notNull()
      .default("dead"),
    replayedAt: text("replayed_at"),
  },
  (t) => [index("dead_letters_status_idx").on(t.status, t.queue)],
);
export type DeadLetterRow = typeof deadLetters.$inferSelect;

/** Raw analytics events, appended by the analytics queue consumer (id = the producer's event id). */
export const analyticsEvents = sqliteTable(
  "analytics_events",
  {
    id: text("id").primaryKey(),
    kind: text("kind").notNull(),
    eventId: text("event_id").notNull(),
    at: text("at").notNull(),
    userId: text("user_id"),
    quantity: integer("quantity").notNull().default(0),
    amount: integer("amount").notNull().default(0),
  },
  (t) => [index("analytics_events_at_idx").on(t.at), index("analytics_events_event_idx").on(t.eventId, t.at)],
);

/** Per event, per minute, per kind: counts rolled up by the cron trigger (idempotent: recomputed per minute). */
export const analyticsMinute = sqliteTable(
  "analytics_minute",
  {
    eventId: text("event_id").notNull(),
    minute: text("minute").notNull(),
    kind: text("kind").notNull(),
    count: integer("count").notNull(),
    quantity: integer("quantity").notNull(),
    amount: integer("amount").notNull(),
  },
  (t) => [primaryKey({ columns: [t.eventId, t.minute, t.kind] })],
);

/** Results of the reconciliation of Inventory DO sales against the order shards. */
export const reconciliationRuns = sqliteTable("reconciliation_runs", {
  id: text("id").primaryKey(),
  ranAt: text("ran_at").notNull(),
  eventId: text("event_id").notNull(),
  soldInInventory: integer("sold_in_inventory").notNull(),
  storedInShards: integer("stored_in_shards").notNull(),
  missing: text("missing", { mode: "json" }).$type<string[]>().notNull(),
  extra: text("extra", { mode: "json" }).$type<string[]>().notNull(),
  duplicated: text("duplicated", { mode: "json" }).$type<string[]>().notNull(),
});

/** Small state the cron keeps between runs (e.g. where reconciliation stopped: key `reconcile_cursor`). */
export const cronState = sqliteTable("cron_state", {
  k: text("k").primaryKey(),
  v: text("v").notNull(),
});

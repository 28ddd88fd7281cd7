import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/**
 * An order shard (D1): the orders and tickets of the buyers whose id hashes to this shard, and the mail
 * outbox of their confirmations. The Postgres backend has the same logical schema (shard-schema-pg.ts).
 * Migrations: `npm run db:generate:shard` → migrations/d1/shard.
 */
export const orders = sqliteTable(
  "orders",
  {
    id: text("id").primaryKey(),
    userId: text("user_id").notNull(),
    eventId: text("event_id").notNull(),
    sectionId: text("section_id").notNull(),
    holdId: text("hold_id").notNull(),
    seats: text("seats", { mode: "json" }).$type<string[]>().notNull(),
    quantity: integer("quantity").notNull(),
    total: integer("total").notNull(),
    currency: text("currency").notNull(),
    paidAt: text("paid_at").notNull(),
    paymentProvider: text("payment_provider").notNull(),
    chargeId: text("charge_id").notNull(),
    traceId: text("trace_id"),
    storedAt: text("stored_at").notNull(),
  },
  (t) => [index("orders_user_paid_idx").on(t.userId, t.paidAt), index("orders_event_idx").on(t.eventId)],
);

export const tickets = sqliteTable(
  "tickets",
  {
    id: text("id").primaryKey(),
    orderId: text("order_id").notNull(),
    seat: text("seat").notNull(),
    code: text("code").notNull(),
    /** `valid`, or `void` once refunded (the Inventory DO owns the state; the orders queue copies refunds here). */
    status: text("status", { enum: ["valid", "void", "used"] })
      .notNull()
      .default("valid"),
  },
  (t) => [index("tickets_order_idx").on(t.orderId)],
);

/** Buyer confirmations waiting for (or handed to) the mail provider. One per order. */
export const mailOutbox = sqliteTable("mail_outbox", {
  orderId: text("order_id").primaryKey(),
  userId: text("user_id").notNull(),
  subject: text("subject").notNull(),
  body: text("body").notNull(),
  createdAt: text("created_at").notNull(),
  sentAt: text("sent_at"),
});

export type OrderRow = typeof orders.$inferSelect;
export type TicketRow = typeof tickets.$inferSelect;

import { index, integer, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/** The order shard schema on PostgreSQL: the same tables and columns as shard-schema.ts (D1). */
export const orders = pgTable(
  "orders",
  {
    id: text("id").primaryKey(),
    userId: text("user_id").notNull(),
    eventId: text("event_id").notNull(),
    sectionId: text("section_id").notNull(),
    holdId: text("hold_id").notNull(),
    seats: jsonb("seats").$type<string[]>().notNull(),
    quantity: integer("quantity").notNull(),
    total: integer("total").notNull(),
    currency: text("currency").notNull(),
    paidAt: timestamp("paid_at", { withTimezone: true, mode: "string" }).notNull(),
    paymentProvider: text("payment_provider").notNull(),
    chargeId: text("charge_id").notNull(),
    traceId: text("trace_id"),
    storedAt: timestamp("stored_at", { withTimezone: true, mode: "string" }).notNull(),
  },
  (t) => [index("orders_user_paid_idx").on(t.userId, t.paidAt), index("orders_event_idx").on(t.eventId)],
);

export const tickets = pgTable(
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

export const mailOutbox = pgTable("mail_outbox", {
  orderId: text("order_id").primaryKey(),
  userId: text("user_id").notNull(),
  subject: text("subject").notNull(),
  body: text("body").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "string" }).notNull(),
  sentAt: timestamp("sent_at", { withTimezone: true, mode: "string" }),
});

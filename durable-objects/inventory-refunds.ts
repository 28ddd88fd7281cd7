import type { InventoryConfig } from "../lib/inventory-types";
import {
  type Order,
  type OrderRefundedMessage,
  orderRefundedMessage,
  orderStatusOf,
  type RefundRequestMessage,
  refundRequestMessage,
  type StoredOrder,
  type TicketStatus,
} from "../lib/order";
import { fail, type Outcome, ok } from "../lib/problem";
import { withTicketStatus } from "../lib/ticket-status";

/**
 * Refunds and cancellation inside the Inventory DO that recorded the orders (inventory.ts keeps thin RPC
 * methods that call these). A ticket's state is its row in `ticket_marks` (none = valid; `void` by a
 * refund, `used` by check-in), so a refund and a check-in of the same ticket serialize here.
 *
 * A refund is one synchronous SQLite transaction: void marks, the seats back to `available` (seated) or
 * the places back to capacity (GA: `sold` goes down), the counters, a `refunds` row (status `pending`,
 * retried by the DO's alarm through `tryRefund` until the provider confirms), a `refund_parts` row (the
 * amount and tickets of this refund, and its outbox state) and a ledger note (the buyer's LimitLedger
 * then counts only the tickets still valid). The provider call happens afterwards, outside it.
 *
 * Once the provider confirmed, the `order.refunded` message goes to the orders queue (the shard's copy
 * follows; its consumer sends the buyer notice, the organizer's webhook and the analytics event) and is
 * re-sent by the alarm until the consumer confirms it ({@link refundOutboxDue}).
 *
 * Cancellation: a `cancellation` row stops holds and checkouts at once, releases the active holds, and
 * records how many orders still had valid tickets (the progress total); the alarm then queues one
 * refund request per recorded order on the refunds queue, 100 at a time, resuming from a cursor.
 */

export const REFUNDS_SCHEMA = `
CREATE TABLE IF NOT EXISTS refund_parts (
  refund_key TEXT PRIMARY KEY, order_id TEXT NOT NULL, charge_key TEXT NOT NULL, amount INTEGER NOT NULL, tickets TEXT NOT NULL,
  cause TEXT NOT NULL, reason TEXT, created_at INTEGER NOT NULL, sent_at INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
  confirmed INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS refund_parts_order ON refund_parts(order_id);
CREATE TABLE IF NOT EXISTS cancellation (
  id INTEGER PRIMARY KEY CHECK (id = 0), at INTEGER NOT NULL, reason TEXT, event_name TEXT, total INTEGER NOT NULL,
  cursor INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0);
`;

/** What the refund steps need from the Inventory DO (its storage and a few of its private steps). */
export interface RefundHost {
  sql: SqlStorage;
  storage: DurableObjectStorage;
  config: InventoryConfig;
  /** Notes (inside the transaction) that the buyer's ledger must learn the hold's new state. */
  noteLedger(holdId: string): void;
  /** `n` sold places went back on sale (in-memory counts, publish). */
  returned(n: number): void;
}

/** Why a refund is made. */
type RefundCause = OrderRefundedMessage["cause"];

/** A refund asked of the DO. */
export interface RefundAsk {
  /** Named tickets; omitted: every ticket of the order (`organizer`) or every ticket still valid (`event.cancelled`). */
  tickets?: string[];
  /** Idempotency key of this refund (the provider's refund key). */
  refundKey: string;
  cause: RefundCause;
  reason?: string;
}

/** What a refund step did: the order as it is now, and the refund key to settle (null: nothing was left). */
export interface RefundDone {
  order: Order;
  refundKey: string | null;
}

/** Ticket states of an order (tickets without a mark are valid). */
function ticketStates(sql: SqlStorage, orderId: string): Map<string, TicketStatus> {
  return new Map(
    sql
      .exec<{ ticket_id: string; status: "void" | "used" }>("SELECT ticket_id, status FROM ticket_marks WHERE order_id = ?", orderId)
      .toArray()
      .map((r) => [r.ticket_id, r.status]),
  );
}

/** The SQL expression counting the voided tickets (the ledger counts only the others) of the order the column `orderId` names. */
export const voidedCountOf = (orderId: string): string =>
  `(SELECT count(*) FROM ticket_marks WHERE ticket_marks.order_id = ${orderId} AND ticket_marks.status = 'void')`;

/** The order document with its tickets' states and the order's status as they are now. */
export function currentOrder(sql: SqlStorage, order: Order): Order {
  const withStatus = withTicketStatus(sql, order);
  return { ...withStatus, status: orderStatusOf(withStatus.tickets) };
}

/** True when the event's sale was cancelled here. */
export const isCancelled = (sql: SqlStorage): boolean => sql.exec("SELECT 1 FROM cancellation WHERE id = 0").toArray().length > 0;

/**
 * Voids tickets of `stored`, returns their places to sale and records the refund (pending), in one
 * transaction. Idempotent per `ask.refundKey` (a repeat answers the order as it is). Fails with
 * `not_refundable` when a named ticket is void or used already, `validation_failed` for a ticket of another
 * order.
 */
export function refundStep(
  host: RefundHost,
  stored: StoredOrder,
  chargeKey: string,
  provider: string,
  ask: RefundAsk,
): Outcome<RefundDone> {
  const { sql } = host;
  if (sql.exec("SELECT 1 FROM refund_parts WHERE refund_key = ?", ask.refundKey).toArray().length)
    return ok({ order: currentOrder(sql, stored.body), refundKey: ask.refundKey });
  const states = ticketStates(sql, stored.id);
  const all = stored.body.tickets;
  let targets: typeof all;
  if (ask.tickets) {
    const known = new Map(all.map((t) => [t.id, t]));
    const unknown = ask.tickets.filter((id) => !known.has(id));
    if (unknown.length) return fail("validation_failed", `Not a ticket of this order: ${unknown.join(", ")}.`);
    targets = [...new Set(ask.tickets)].map((id) => known.get(id) as (typeof all)[number]);
  } else targets = ask.cause === "organizer" ? all : all.filter((t) => !states.has(t.id));
  const taken = targets.filter((t) => states.has(t.id));
  if (taken.length)
    return fail(
      "not_refundable",
      taken.map((t) => `Ticket ${t.id} is ${states.get(t.id) === "used" ? "checked in" : "already refunded"}.`).join(" "),
    );
  if (!targets.length) return ok({ order: currentOrder(sql, stored.body), refundKey: null });

  const price = Math.round(stored.body.total / stored.body.quantity);
  const amount = price * targets.length;
  const now = Date.now();
  const seated = host.config.kind === "seated";
  host.storage.transactionSync(() => {
    for (const t of targets) {
      sql.exec(
        "INSERT INTO ticket_marks (ticket_id, order_id, status, at, by) VALUES (?, ?, 'void', ?, ?)",
        t.id,
        stored.id,
        now,
        ask.cause,
      );
      if (seated)
        sql.exec(
          "UPDATE seats SET status = 'available', hold_id = NULL WHERE id = ? AND hold_id = ? AND status = 'sold'",
          t.seat,
          stored.holdId,
        );
    }
    sql.exec("UPDATE counters SET sold = sold - ? WHERE id = 0", targets.length);
    sql.exec(
      "INSERT INTO refund_parts (refund_key, order_id, charge_key, amount, tickets, cause, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ask.refundKey,
      stored.id,
      chargeKey,
      amount,
      JSON.stringify(targets.map((t) => t.id)),
      ask.cause,
      ask.reason ?? null,
      now,
    );
    sql.exec(
      `INSERT INTO refunds (idempotency_key, hold_id, provider, reason, status, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)`,
      ask.refundKey,
      stored.holdId,
      provider,
      ask.cause === "event.cancelled" ? "event cancelled" : `refund by organizer${ask.reason ? `: ${ask.reason}` : ""}`.slice(0, 500),
      now,
      now,
    );
    host.noteLedger(stored.holdId);
  });
  host.returned(targets.length);
  return ok({ order: currentOrder(sql, stored.body), refundKey: ask.refundKey });
}

/** The partial refund recorded under `key`, if it is one (else the key is a whole-charge void of checkout). */
export function refundPart(sql: SqlStorage, key: string): { chargeKey: string; amount: number } | undefined {
  return sql
    .exec<{ charge_key: string; amount: number }>("SELECT charge_key, amount FROM refund_parts WHERE refund_key = ?", key)
    .toArray()
    .map((r) => ({ chargeKey: r.charge_key, amount: r.amount }))[0];
}

/**
 * Refunds whose provider call is settled and whose `order.refunded` message is due: never sent, or sent and
 * not confirmed by the orders consumer after 30 s, doubling per attempt up to 10 minutes (like the order
 * outbox: the consumer is idempotent, so a second copy changes nothing).
 */
export function refundOutboxDue(sql: SqlStorage, now: number, only: string | null = null, limit = 100): string[] {
  return sql
    .exec<{ refund_key: string }>(
      `SELECT p.refund_key FROM refund_parts p JOIN refunds r ON r.idempotency_key = p.refund_key
       WHERE p.confirmed = 0 AND r.status <> 'pending' AND (?1 IS NULL OR p.refund_key = ?1)
         AND (p.sent_at IS NULL OR p.sent_at + min(30000 * (1 << max(p.attempts - 1, 0)), 600000) <= ?2)
       ORDER BY p.created_at LIMIT ?3`,
      only,
      now,
      limit,
    )
    .toArray()
    .map((r) => r.refund_key);
}

/** The `order.refunded` message of a settled refund (validated). */
export function refundedMessage(sql: SqlStorage, key: string, order: (id: string) => StoredOrder | undefined): OrderRefundedMessage | null {
  const p = sql
    .exec<{ order_id: string; amount: number; tickets: string; cause: RefundCause; reason: string | null; created_at: number }>(
      "SELECT order_id, amount, tickets, cause, reason, created_at FROM refund_parts WHERE refund_key = ?",
      key,
    )
    .toArray()[0];
  const stored = p ? order(p.order_id) : undefined;
  if (!p || !stored) return null;
  const now = currentOrder(sql, stored.body);
  // A cancellation's notice names the event (its name as it was when cancelled).
  const eventName =
    p.cause === "event.cancelled"
      ? sql.exec<{ event_name: string | null }>("SELECT event_name FROM cancellation WHERE id = 0").toArray()[0]?.event_name
      : null;
  return orderRefundedMessage.parse({
    v: 1,
    kind: "order.refunded",
    refundKey: key,
    orderId: stored.id,
    userId: stored.userId,
    eventId: stored.body.eventId,
    tickets: JSON.parse(p.tickets) as string[],
    status: now.status === "paid" ? "partially_refunded" : now.status,
    amount: p.amount,
    currency: stored.body.currency,
    cause: p.cause,
    ...(p.reason ? { reason: p.reason } : {}),
    ...(eventName ? { eventName } : {}),
    refundedAt: new Date(p.created_at).toISOString(),
  });
}

/**
 * Notes `order.refunded` messages as being handed to the queue. Called before the send, with no await
 * between the due check and this, so a second sender (the alarm while a refund's own send is in flight)
 * finds them not due and does not send them again.
 */
export function markRefundsSent(sql: SqlStorage, keys: string[], now: number): void {
  for (const k of keys) sql.exec("UPDATE refund_parts SET sent_at = ?, attempts = attempts + 1 WHERE refund_key = ?", now, k);
}

/** The send of these messages failed: they are due again at once (undoes {@link markRefundsSent}). */
export function unmarkRefundsSent(sql: SqlStorage, keys: string[]): void {
  for (const k of keys) sql.exec("UPDATE refund_parts SET sent_at = NULL, attempts = max(attempts - 1, 0) WHERE refund_key = ?", k);
}

/** The orders consumer stored these refunds in the shard: they leave the outbox. */
export function confirmRefunds(sql: SqlStorage, keys: string[]): void {
  for (const k of keys) sql.exec("UPDATE refund_parts SET confirmed = 1 WHERE refund_key = ?", k);
}

/** Cancellation progress of this DO: orders to refund (those with valid tickets at cancellation) and refunded. */
export interface CancellationProgress {
  cancelled: boolean;
  total: number;
  refunded: number;
}

/** The progress of this DO's cancellation refunds (orders whose cancellation refund the provider confirmed). */
export function cancellationProgress(sql: SqlStorage): CancellationProgress {
  const row = sql.exec<{ total: number }>("SELECT total FROM cancellation WHERE id = 0").toArray()[0];
  if (!row) return { cancelled: false, total: 0, refunded: 0 };
  const refunded = sql
    .exec<{ n: number }>(
      `SELECT count(DISTINCT p.order_id) AS n FROM refund_parts p JOIN refunds r ON r.idempotency_key = p.refund_key
       WHERE p.cause = 'event.cancelled' AND r.status <> 'pending'`,
    )
    .one().n;
  return { cancelled: true, total: row.total, refunded };
}

/**
 * Records the cancellation (once): from now on holds and checkouts are refused. Returns the active holds
 * to release (the caller releases them in the same transaction) and whether it is new.
 */
export function recordCancellation(sql: SqlStorage, reason: string | undefined, eventName: string | undefined, now: number): boolean {
  if (isCancelled(sql)) return false;
  const total = sql
    .exec<{ n: number }>(
      `SELECT count(*) AS n FROM orders o WHERE (SELECT count(*) FROM ticket_marks m WHERE m.order_id = o.id)
         < json_array_length(json_extract(o.message, '$.tickets'))`,
    )
    .one().n;
  sql.exec(
    "INSERT INTO cancellation (id, at, reason, event_name, total) VALUES (0, ?, ?, ?, ?)",
    now,
    reason ?? null,
    eventName ?? null,
    total,
  );
  return true;
}

/**
 * The next refund requests of a cancellation (up to `limit` orders after the cursor), with the cursor to
 * store once they are queued; null when every order was queued.
 */
export function nextCancellationBatch(
  sql: SqlStorage,
  eventId: string,
  limit = 100,
): { messages: RefundRequestMessage[]; cursor: number } | null {
  const c = sql
    .exec<{ cursor: number; done: number; reason: string | null }>("SELECT cursor, done, reason FROM cancellation WHERE id = 0")
    .toArray()[0];
  if (!c || c.done) return null;
  const rows = sql
    .exec<{ rid: number; id: string }>("SELECT rowid AS rid, id FROM orders WHERE rowid > ? ORDER BY rowid LIMIT ?", c.cursor, limit)
    .toArray();
  if (!rows.length) {
    sql.exec("UPDATE cancellation SET done = 1 WHERE id = 0");
    return null;
  }
  return {
    messages: rows.map((r) =>
      refundRequestMessage.parse({
        v: 1,
        kind: "order.refund",
        orderId: r.id,
        eventId,
        cause: "event.cancelled",
        ...(c.reason ? { reason: c.reason } : {}),
      }),
    ),
    cursor: (rows[rows.length - 1] as { rid: number }).rid,
  };
}

/** Stores the cursor after a batch of refund requests was queued. */
export const advanceCancellation = (sql: SqlStorage, cursor: number): void =>
  void sql.exec("UPDATE cancellation SET cursor = ? WHERE id = 0", cursor);

import { log } from "./log";
import { metric } from "./metric-catalog";
import { type Order, orderBodyOf, type TicketStatus } from "./order";
import { type OrganizerEventMessage, sendOrganizerEvent } from "./organizer-webhooks";

/**
 * Ticket state, kept in the Inventory Durable Object that recorded the ticket's order (table
 * `ticket_marks`: one row per ticket that is `void` (refunded) or `used` (checked in); no row = valid).
 * Refunds write `void` marks, check-in writes `used` marks, both in the same object, so a refund and a
 * check-in of one ticket serialize, and each function here runs as one synchronous SQLite step (no await):
 * twenty gates scanning one code at once get one check-in and nineteen "already checked in".
 *
 * Pure functions over the object's SqlStorage; the DO exposes them as thin RPC methods.
 *
 * The `ticket.checked_in` webhook has an outbox here too (`check_in_announcements`): the check-in writes the
 * organizer event in the same step as the mark, the DO hands it to the notifications queue at once and its
 * alarm re-sends what the queue refused, so neither a queue outage nor an edge that dies after answering
 * loses it (a repeat is harmless: deliveries are deduplicated by id).
 */

/** Created with the Inventory DO's other tables. */
export const CHECK_IN_SCHEMA = `
CREATE TABLE IF NOT EXISTS check_in_announcements (
  ticket_id TEXT PRIMARY KEY, body TEXT NOT NULL, due_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
`;

/** A refused announcement is re-sent after this long, doubling per attempt up to {@link ANNOUNCE_RETRY_MAX_MS}. */
const ANNOUNCE_RETRY_MS = 5_000;
const ANNOUNCE_RETRY_MAX_MS = 600_000;

/** A ticket as `GET /v1/tickets/:id` answers it. */
export interface TicketView {
  id: string;
  orderId: string;
  eventId: string;
  seat: string;
  code: string;
  status: TicketStatus;
}

/** A mark: what happened to a ticket, when (ms) and by whom (the organizer or admin, for check-ins). */
interface Mark {
  status: "void" | "used";
  at: number;
  by: string | null;
}

/** The outcome of a check-in, as the DO answers it (crosses the RPC boundary: plain data). */
export type CheckInResult =
  | { result: "checked_in"; ticket: TicketView; checkedInAt: string }
  | { result: "already_checked_in"; ticket: TicketView; checkedInAt: string }
  | { result: "void"; ticket: TicketView; voidedAt: string }
  | { result: "not_found" };

/** One row of the check-in list (CSV export). */
export interface CheckInRow {
  ticketId: string;
  orderId: string;
  seat: string;
  status: TicketStatus;
  /** ISO time of the check-in (used) or the refund (void); null while valid. */
  at: string | null;
  code: string;
}

interface OrderRow extends Record<string, SqlStorageValue> {
  id: string;
  user_id: string;
  body: string;
  message: string;
}

const orderRow = (sql: SqlStorage, orderId: string): OrderRow | undefined =>
  sql.exec<OrderRow>("SELECT id, user_id, body, message FROM orders WHERE id = ?", orderId).toArray()[0];

const markOf = (sql: SqlStorage, ticketId: string): Mark | undefined =>
  sql
    .exec<{ status: "void" | "used"; at: number; by: string | null }>(
      "SELECT status, at, by FROM ticket_marks WHERE ticket_id = ?",
      ticketId,
    )
    .toArray()[0];

/** The marks of an order's tickets, by ticket id. */
function marksOf(sql: SqlStorage, orderId: string): Map<string, Mark> {
  return new Map(
    sql
      .exec<{ ticket_id: string; status: "void" | "used"; at: number; by: string | null }>(
        "SELECT ticket_id, status, at, by FROM ticket_marks WHERE order_id = ?",
        orderId,
      )
      .toArray()
      .map((r) => [r.ticket_id, { status: r.status, at: r.at, by: r.by }]),
  );
}

/** The order document with each ticket's current status. */
export function withTicketStatus(sql: SqlStorage, order: Order): Order {
  const marks = marksOf(sql, order.id);
  return { ...order, tickets: order.tickets.map((t) => ({ ...t, status: marks.get(t.id)?.status ?? "valid" })) };
}

/** A ticket of an order recorded here, with its status; undefined when the order or ticket is not here. */
function findTicket(sql: SqlStorage, orderId: string, ticketId: string): { view: TicketView; userId: string; mark?: Mark } | undefined {
  const row = orderRow(sql, orderId);
  if (!row) return undefined;
  const order = orderBodyOf(row.body, row.message);
  const ticket = order.tickets.find((t) => t.id === ticketId);
  if (!ticket) return undefined;
  const mark = markOf(sql, ticketId);
  return {
    userId: row.user_id,
    view: { id: ticket.id, orderId, eventId: order.eventId, seat: ticket.seat, code: ticket.code, status: mark?.status ?? "valid" },
    ...(mark ? { mark } : {}),
  };
}

/**
 * A ticket for its owner: undefined when it is not here or `userId` did not buy it (the caller answers 404).
 * `userId` null: the caller proved access otherwise (a signed QR-code link, lib/tickets.ts).
 */
export function ownTicket(sql: SqlStorage, orderId: string, ticketId: string, userId: string | null): TicketView | undefined {
  const found = findTicket(sql, orderId, ticketId);
  return found && (userId === null || found.userId === userId) ? found.view : undefined;
}

/**
 * Checks a ticket in: marks it `used` unless it already has a mark. One synchronous step (read the mark,
 * insert it), so concurrent check-ins of one ticket in this object give exactly one `checked_in`; the
 * others see its time. A void ticket (refunded) is refused and stays void.
 */
export function checkIn(sql: SqlStorage, orderId: string, ticketId: string, by: string, now: number): CheckInResult {
  const found = findTicket(sql, orderId, ticketId);
  if (!found) return { result: "not_found" };
  const { view, mark } = found;
  if (mark?.status === "void") return { result: "void", ticket: view, voidedAt: new Date(mark.at).toISOString() };
  if (mark?.status === "used") return { result: "already_checked_in", ticket: view, checkedInAt: new Date(mark.at).toISOString() };
  sql.exec("INSERT INTO ticket_marks (ticket_id, order_id, status, at, by) VALUES (?, ?, 'used', ?, ?)", ticketId, orderId, now, by);
  const checkedInAt = new Date(now).toISOString();
  const announcement = checkedInEvent(view, checkedInAt, by);
  sql.exec(
    "INSERT OR IGNORE INTO check_in_announcements (ticket_id, body, due_at) VALUES (?, ?, ?)",
    ticketId,
    JSON.stringify(announcement),
    now + ANNOUNCE_RETRY_MS,
  );
  return { result: "checked_in", ticket: { ...view, status: "used" }, checkedInAt };
}

/** The `ticket.checked_in` organizer event of a check-in (delivery id per ticket: a ticket is checked in once). */
const checkedInEvent = (t: TicketView, checkedInAt: string, by: string): OrganizerEventMessage => ({
  v: 1,
  kind: "organizer.event",
  id: `ticket.checked_in:${t.id}`,
  type: "ticket.checked_in",
  eventId: t.eventId,
  occurredAt: checkedInAt,
  data: { ticketId: t.id, orderId: t.orderId, seat: t.seat, checkedInAt, by },
});

/** When the next announcement is due (ms), or null when none waits. */
export const nextAnnouncementAt = (sql: SqlStorage): number | null =>
  sql.exec<{ t: number | null }>("SELECT min(due_at) AS t FROM check_in_announcements").one().t;

/**
 * Hands check-in announcements to the notifications queue: those of `ticketIds`, or every one due by `now`
 * (the alarm). Sent ones leave the outbox; when the queue refuses, each is kept and re-sent later (5 s,
 * doubling to 10 minutes), counted and logged. Never throws.
 */
export async function sendAnnouncements(sql: SqlStorage, queue: Queue, now: number, ticketIds?: string[]): Promise<void> {
  const rows = (
    ticketIds
      ? ticketIds.flatMap((id) =>
          sql
            .exec<{ ticket_id: string; body: string; attempts: number }>("SELECT * FROM check_in_announcements WHERE ticket_id = ?", id)
            .toArray(),
        )
      : sql
          .exec<{ ticket_id: string; body: string; attempts: number }>(
            "SELECT * FROM check_in_announcements WHERE due_at <= ? ORDER BY due_at LIMIT 100",
            now,
          )
          .toArray()
  ).map((r) => ({ ticketId: r.ticket_id, attempts: r.attempts, message: JSON.parse(r.body) as OrganizerEventMessage }));
  if (!rows.length) return;
  try {
    await sendOrganizerEvent(
      queue,
      rows.map((r) => r.message),
    );
    for (const r of rows) sql.exec("DELETE FROM check_in_announcements WHERE ticket_id = ?", r.ticketId);
  } catch (err) {
    const at = Date.now();
    for (const r of rows)
      sql.exec(
        "UPDATE check_in_announcements SET attempts = attempts + 1, due_at = ? WHERE ticket_id = ?",
        at + Math.min(ANNOUNCE_RETRY_MS * 2 ** r.attempts, ANNOUNCE_RETRY_MAX_MS),
        r.ticketId,
      );
    metric.checkInWebhookRetries.inc({}, rows.length);
    log.warn("ticket.checked_in webhooks not queued; the alarm re-sends them", { count: rows.length, error: String(err) });
  }
}

/**
 * A page of the check-in list: the tickets of the orders recorded here, in order id order, after the order
 * `afterOrderId` (exclusive; "" from the start), at most `limit` orders. `next` is the cursor of the next
 * page, or null after the last.
 */
export function checkInList(sql: SqlStorage, afterOrderId: string, limit: number): { rows: CheckInRow[]; next: string | null } {
  const orders = sql
    .exec<{ id: string; body: string; message: string }>(
      "SELECT id, body, message FROM orders WHERE id > ? ORDER BY id LIMIT ?",
      afterOrderId,
      limit,
    )
    .toArray();
  const rows: CheckInRow[] = [];
  for (const o of orders) {
    const marks = marksOf(sql, o.id);
    for (const t of orderBodyOf(o.body, o.message).tickets) {
      const mark = marks.get(t.id);
      rows.push({
        ticketId: t.id,
        orderId: o.id,
        seat: t.seat,
        status: mark?.status ?? "valid",
        at: mark ? new Date(mark.at).toISOString() : null,
        code: t.code,
      });
    }
  }
  return { rows, next: orders.length === limit ? (orders[orders.length - 1]?.id ?? null) : null };
}

/** The status of every marked ticket of the named orders recorded here (tickets absent are valid). */
export function ticketStatuses(sql: SqlStorage, orderIds: string[]): Record<string, TicketStatus> {
  const out: Record<string, TicketStatus> = {};
  for (const id of orderIds) for (const [ticketId, mark] of marksOf(sql, id)) out[ticketId] = mark.status;
  return out;
}

import type { Order, TicketStatus } from "./order";

/**
 * Ticket state, kept in the Inventory Durable Object that recorded the ticket's order (table
 * `ticket_marks`: one row per ticket that is `void` (refunded) or `used` (checked in); no row = valid).
 * Refunds write `void` marks, check-in writes `used` marks, both in the same object, so a refund and a
 * check-in of one ticket serialize, and each function here runs as one synchronous SQLite step (no await):
 * twenty gates scanning one code at once get one check-in and nineteen "already checked in".
 *
 * Pure functions over the object's SqlStorage; the DO exposes them as thin RPC methods.
 */

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
}

const orderRow = (sql: SqlStorage, orderId: string): OrderRow | undefined =>
  sql.exec<OrderRow>("SELECT id, user_id, body FROM orders WHERE id = ?", orderId).toArray()[0];

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
  const order = JSON.parse(row.body) as Order;
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
  return { result: "checked_in", ticket: { ...view, status: "used" }, checkedInAt: new Date(now).toISOString() };
}

/**
 * A page of the check-in list: the tickets of the orders recorded here, in order id order, after the order
 * `afterOrderId` (exclusive; "" from the start), at most `limit` orders. `next` is the cursor of the next
 * page, or null after the last.
 */
export function checkInList(sql: SqlStorage, afterOrderId: string, limit: number): { rows: CheckInRow[]; next: string | null } {
  const orders = sql
    .exec<{ id: string; body: string }>("SELECT id, body FROM orders WHERE id > ? ORDER BY id LIMIT ?", afterOrderId, limit)
    .toArray();
  const rows: CheckInRow[] = [];
  for (const o of orders) {
    const marks = marksOf(sql, o.id);
    for (const t of (JSON.parse(o.body) as Order).tickets) {
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

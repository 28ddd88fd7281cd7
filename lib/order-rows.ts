import { type Order, type OrderMessage, type OrderRefundedMessage, orderStatusOf, type TicketStatus } from "./order";
import { parseTraceparent } from "./trace";

/**
 * What every order-shard backend shares: the store interface, the rows of an order message and the order
 * document of a row (same columns on D1 and Postgres).
 */

/** An order as stored: the same document as the API's `order`. */
export type StoredOrderRow = Order;

/** One shard's storage. */
export interface OrderStore {
  readonly name: string;
  /** Stores the order and its tickets; `exists` when it was already there. */
  saveOrder(msg: OrderMessage): Promise<"inserted" | "exists">;
  /**
   * Stores several orders with their tickets in as few round trips as the database allows (the orders
   * consumer's batch for this shard), all or nothing per call; per order, `inserted` or `exists`.
   */
  saveOrders(msgs: readonly OrderMessage[]): Promise<("inserted" | "exists")[]>;
  getOrder(orderId: string): Promise<StoredOrderRow | null>;
  /** A buyer's orders, newest first. */
  listOrders(userId: string, limit: number): Promise<StoredOrderRow[]>;
  /** Order ids of an event (reconciliation), with how many rows each id has (a duplicate shows as > 1). */
  orderIdsForEvent(eventId: string): Promise<{ id: string; rows: number }[]>;
  /** How many orders the shard holds (reconciliation, capacity figures). */
  countOrders(): Promise<number>;
  /**
   * The shard's order ids in id order (reconciliation). Without `limit` it returns them all; a large shard
   * is read page by page: `after` = the last id of the previous page.
   */
  allOrderIds(page?: { after?: string; limit?: number }): Promise<string[]>;
  /**
   * Voids the tickets of a refund (idempotent; the order's status follows from its tickets). `missing` when
   * the order is not stored yet (its own message is still on the way: the caller retries).
   */
  applyRefund(msg: OrderRefundedMessage): Promise<"applied" | "missing">;
  /** The local mail adapter's outbox: records a confirmation as sent (idempotent per order). */
  recordMail(mail: { orderId: string; userId: string; subject: string; body: string }): Promise<"sent" | "already_sent">;
  /** {@link recordMail} for several mails in one round trip (a consumer batch's part for this shard); one answer each, in order. */
  recordMails(mails: readonly { orderId: string; userId: string; subject: string; body: string }[]): Promise<("sent" | "already_sent")[]>;
}

/** The `orders` row of a paid-order message (same columns on D1 and Postgres). */
export function orderColumns(msg: OrderMessage, storedAt: string) {
  return {
    id: msg.orderId,
    userId: msg.userId,
    eventId: msg.eventId,
    sectionId: msg.sectionId,
    holdId: msg.holdId,
    seats: msg.seats,
    quantity: msg.quantity,
    total: msg.total,
    currency: msg.currency,
    paidAt: msg.paidAt,
    paymentProvider: msg.payment.provider,
    chargeId: msg.payment.chargeId,
    traceId: parseTraceparent(msg.traceparent)?.traceId ?? null,
    storedAt,
  };
}

/** The `tickets` rows of a paid-order message. */
export const ticketColumns = (msg: OrderMessage) =>
  msg.tickets.map((t) => ({ id: t.id, orderId: msg.orderId, seat: t.seat, code: t.code }));

/** An order document from its row and tickets. */
export function toView(
  r: {
    id: string;
    eventId: string;
    sectionId: string;
    holdId: string;
    seats: string[];
    quantity: number;
    total: number;
    currency: string;
    paidAt: string;
  },
  tickets: { id: string; seat: string; code: string; status?: TicketStatus }[],
): StoredOrderRow {
  const status = orderStatusOf(tickets);
  return {
    id: r.id,
    status,
    eventId: r.eventId,
    sectionId: r.sectionId,
    holdId: r.holdId,
    seats: r.seats,
    quantity: r.quantity,
    total: r.total,
    currency: r.currency,
    // Refunds reach the shard (void, through the orders queue); check-ins do not: GET /v1/orders overlays
    // each ticket's live status from the Inventory DO that keeps it (lib/check-in.ts).
    tickets: tickets.map((t) => ({ id: t.id, seat: t.seat, code: t.code, status: t.status ?? "valid" })),
    createdAt: new Date(r.paidAt).toISOString(),
  };
}

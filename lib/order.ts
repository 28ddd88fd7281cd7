import { z } from "zod";

/**
 * The order document: one zod schema owns it. The API's `order`, the orders-queue message, the order as the
 * Inventory DO records it and the row the shards return are all derived from {@link orderSchema}, so a field
 * is added or changed in one place.
 */

const id = z.string().min(1).max(200);

/** A ticket's state: `void` once refunded, `used` once checked in (lib/ticket-status.ts keeps it). */
export const ticketStatus = z.enum(["valid", "void", "used"]);
export type TicketStatus = z.output<typeof ticketStatus>;

/** A ticket as issued and stored in the shards (`code` is the signed QR payload, lib/tickets.ts). */
const issuedTicketSchema = z.object({ id: z.string().min(1), seat: z.string().min(1), code: z.string().min(1) });

/**
 * A ticket as the order shows it: as issued, with its status. The status lives in the Inventory DO that
 * recorded the order (its `ticket_marks`); the queue message and the shards carry the ticket without it.
 */
const ticketSchema = issuedTicketSchema.extend({ status: ticketStatus });
export type Ticket = z.output<typeof ticketSchema>;

/** Order states of the API: paid, then partially refunded (some tickets void) or refunded (all void). */
const orderStatus = z.enum(["paid", "partially_refunded", "refunded"]);
export type OrderStatus = z.output<typeof orderStatus>;

/** An order's status from its tickets: paid while none is void, refunded once all are, else partially refunded. */
export function orderStatusOf(tickets: { status?: TicketStatus }[]): OrderStatus {
  const voided = tickets.filter((t) => t.status === "void").length;
  return voided === 0 ? "paid" : voided === tickets.length ? "refunded" : "partially_refunded";
}

/** The API's `order` (POST /v1/orders, GET /v1/orders/:id, GET /v1/orders). */
export const orderSchema = z.object({
  id,
  status: orderStatus,
  eventId: id,
  sectionId: id,
  holdId: id,
  seats: z.array(z.string().min(1)),
  quantity: z.number().int().positive(),
  total: z.number().int().nonnegative(),
  currency: z.string().length(3),
  tickets: z.array(ticketSchema).min(1),
  createdAt: z.iso.datetime({ offset: true }),
});
export type Order = z.output<typeof orderSchema>;

/**
 * A card checkout Stripe accepted but has not settled (answered 202; `GET /v1/orders/:id` shows it until
 * the webhook settles it): the order to be, without tickets.
 */
export const pendingOrderSchema = orderSchema.extend({ status: z.literal("pending"), tickets: z.array(ticketSchema).max(0) });
export type PendingOrder = z.output<typeof pendingOrderSchema>;

/**
 * The orders queue message: a paid order, as the Inventory DO recorded it, with who bought it and how it was
 * paid. Producer (checkout, the DO's outbox) and consumer share it. Besides the shape it checks what would
 * make a broken order row: one ticket per place sold, distinct ticket ids, and seats (when seated) matching
 * the quantity.
 */
export const orderMessage = orderSchema
  .pick({ eventId: true, sectionId: true, holdId: true, seats: true, quantity: true, total: true, currency: true, tickets: true })
  .extend({
    tickets: z.array(issuedTicketSchema).min(1),
    v: z.literal(1),
    kind: z.literal("order.paid"),
    orderId: id,
    userId: id,
    paidAt: orderSchema.shape.createdAt,
    payment: z.object({ provider: z.string().min(1), chargeId: z.string().min(1) }),
    organizerId: z.string().optional(),
    traceparent: z.string().optional(),
  })
  .superRefine((o, ctx) => {
    if (o.tickets.length !== o.quantity)
      ctx.addIssue({ code: "custom", path: ["tickets"], message: `${o.tickets.length} ticket(s) for quantity ${o.quantity}` });
    if (new Set(o.tickets.map((t) => t.id)).size !== o.tickets.length)
      ctx.addIssue({ code: "custom", path: ["tickets"], message: "ticket ids repeat" });
    if (o.seats.length && o.seats.length !== o.quantity)
      ctx.addIssue({ code: "custom", path: ["seats"], message: `${o.seats.length} seat(s) for quantity ${o.quantity}` });
  });
export type OrderMessage = z.output<typeof orderMessage>;

/**
 * The order document an Inventory DO keeps in `orders.body`: "" when it is the message's own
 * ({@link paidOrderOf}; every order recorded since the body was derived), else the document as stored.
 */
export const orderBodyOf = (body: string, message: OrderMessage | string): Order =>
  body ? (JSON.parse(body) as Order) : paidOrderOf(typeof message === "string" ? (JSON.parse(message) as OrderMessage) : message);

/** The order document of a paid-order message, as its buyer is answered when it is recorded (every ticket valid). */
export const paidOrderOf = (m: OrderMessage): Order => ({
  id: m.orderId,
  status: "paid",
  eventId: m.eventId,
  sectionId: m.sectionId,
  holdId: m.holdId,
  seats: m.seats,
  quantity: m.quantity,
  total: m.total,
  currency: m.currency,
  tickets: m.tickets.map((t) => ({ ...t, status: "valid" })),
  createdAt: m.paidAt,
});

/** A recorded order, as checkout stores it in the Inventory DO before answering. */
export interface StoredOrder {
  id: string;
  holdId: string;
  userId: string;
  /** The order document the buyer is answered with. */
  body: Order;
  /** The orders-queue message for this order (the DO re-sends it until the queue has it: outbox). */
  message: OrderMessage;
  createdAt: number;
}

/** A refund the platform owes or made (a charge whose order could not be completed). */
export interface RefundRecord {
  idempotencyKey: string;
  holdId: string;
  provider: string;
  reason: string;
  status: "pending" | "refunded" | "nothing_to_refund";
  chargeId: string | null;
  attempts: number;
}

/**
 * The orders-queue message of a refund (the shard's copy of the order follows the Inventory DO): the
 * tickets this refund voided and the follow-ups it owes (buyer notice, `order.refunded` webhook, analytics).
 * Idempotent per `refundKey`; the shard derives the order's status from its tickets, so messages may
 * arrive in any order and more than once.
 */
export const orderRefundedMessage = z.object({
  v: z.literal(1),
  kind: z.literal("order.refunded"),
  refundKey: id,
  orderId: id,
  userId: id,
  eventId: id,
  /** Tickets voided by this refund. */
  tickets: z.array(z.string().min(1)).min(1),
  /** The order's status after this refund, as the Inventory DO saw it. */
  status: orderStatus.exclude(["paid"]),
  amount: z.number().int().nonnegative(),
  currency: z.string().length(3),
  /** Why: `organizer` (POST /v1/orders/:id/refund) or `event.cancelled`. */
  cause: z.enum(["organizer", "event.cancelled"]),
  reason: z.string().max(500).optional(),
  /** The event's name, for a cancellation's notice. */
  eventName: z.string().max(200).optional(),
  refundedAt: z.iso.datetime({ offset: true }),
});
export type OrderRefundedMessage = z.output<typeof orderRefundedMessage>;

/** The refunds-queue message: refund what is left of one paid order of a cancelled event. */
export const refundRequestMessage = z.object({
  v: z.literal(1),
  kind: z.literal("order.refund"),
  orderId: id,
  eventId: id,
  cause: z.literal("event.cancelled"),
  reason: z.string().max(500).optional(),
});
export type RefundRequestMessage = z.output<typeof refundRequestMessage>;

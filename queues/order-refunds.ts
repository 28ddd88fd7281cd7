import { analyticsEvent } from "../lib/analytics-event";
import { type BuyerNoticeMessage, sendBuyerNotice } from "../lib/buyer-notices";
import { chunk } from "../lib/chunk";
import { log } from "../lib/log";
import type { OrderRefundedMessage } from "../lib/order";
import type { OrderStore } from "../lib/order-rows";
import { type OrganizerEventMessage, sendOrganizerEvent } from "../lib/organizer-webhooks";
import { shardFor } from "../lib/shards";
import { acknowledge, retryLater } from "./consume";

/** What the refund path of the orders consumer needs (a subset of the orders consumer's deps). */
export interface RefundedOrdersDeps {
  shards: string[];
  store: (shard: string) => OrderStore;
  notifications: Queue;
  analytics: Queue;
  /** Tells the Inventory DOs that these refunds reached their shard (they leave the DO's refund outbox). */
  confirmRefunds: (refunds: { orderId: string; refundKey: string }[]) => Promise<void>;
}

/** The buyer's notice of a refund (a cancellation's refund is told as the cancellation). */
const noticeOf = (m: OrderRefundedMessage): BuyerNoticeMessage => ({
  v: 1,
  kind: "buyer.notice",
  notice: m.cause === "event.cancelled" ? "event.cancelled" : "order.refunded",
  id: `${m.cause === "event.cancelled" ? "event.cancelled" : "order.refunded"}:${m.refundKey}`,
  orderId: m.orderId,
  userId: m.userId,
  eventId: m.eventId,
  amount: m.amount,
  currency: m.currency,
  tickets: m.tickets,
  ...(m.reason ? { reason: m.reason } : {}),
  ...(m.eventName ? { eventName: m.eventName } : {}),
});

/** The organizer's `order.refunded` event. */
const organizerEventOf = (m: OrderRefundedMessage): OrganizerEventMessage => ({
  v: 1,
  kind: "organizer.event",
  id: `order.refunded:${m.refundKey}`,
  type: "order.refunded",
  eventId: m.eventId,
  occurredAt: m.refundedAt,
  data: { orderId: m.orderId, tickets: m.tickets, amount: m.amount, currency: m.currency, status: m.status, cause: m.cause },
});

/**
 * The orders queue's refund messages: voids the tickets in the buyer's shard (idempotent), then queues the
 * follow-ups (buyer notice, the organizer's `order.refunded` webhook, the `order.refunded` analytics event:
 * each deduplicated downstream by the refund key) and confirms to the Inventory DO. A refund of an order
 * its shard does not have yet (its own message is still on the way) is retried with backoff, like any
 * failure; after max_retries it reaches the dead-letter queue.
 */
export async function consumeRefundedOrders(
  queue: string,
  pending: { msg: Message; refund: OrderRefundedMessage }[],
  deps: RefundedOrdersDeps,
): Promise<void> {
  const applied: { msg: Message; refund: OrderRefundedMessage }[] = [];
  for (const p of pending) {
    const shard = shardFor(p.refund.userId, deps.shards);
    try {
      if ((await deps.store(shard).applyRefund(p.refund)) === "missing") throw new Error("order not in its shard yet");
      log.info("refund stored", { orderId: p.refund.orderId, refundKey: p.refund.refundKey, shard });
      applied.push(p);
    } catch (err) {
      retryLater(queue, p.msg, { orderId: p.refund.orderId, refundKey: p.refund.refundKey, shard }, err);
    }
  }
  if (!applied.length) return;
  try {
    for (const part of chunk(applied, 50)) {
      await sendBuyerNotice(
        deps.notifications,
        part.map((p) => noticeOf(p.refund)),
      );
      await sendOrganizerEvent(
        deps.notifications,
        part.map((p) => organizerEventOf(p.refund)),
      );
      await deps.analytics.sendBatch(
        part.map((p) => ({
          body: analyticsEvent({
            id: `order.refunded:${p.refund.refundKey}`,
            kind: "order.refunded",
            eventId: p.refund.eventId,
            at: p.refund.refundedAt,
            userId: p.refund.userId,
            quantity: p.refund.tickets.length,
            amount: p.refund.amount,
          }),
          contentType: "json" as const,
        })),
      );
    }
  } catch (err) {
    for (const p of applied) retryLater(queue, p.msg, { orderId: p.refund.orderId, step: "refund hand-off" }, err);
    return;
  }
  try {
    await deps.confirmRefunds(applied.map((p) => ({ orderId: p.refund.orderId, refundKey: p.refund.refundKey })));
  } catch (err) {
    log.warn("refunds not confirmed to their inventory; its outbox re-sends them", { count: applied.length, error: String(err) });
  }
  for (const p of applied) acknowledge(queue, p.msg);
}

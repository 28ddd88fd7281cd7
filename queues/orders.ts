import { z } from "zod";
import { type AnalyticsEvent, analyticsEvent } from "../lib/analytics-event";
import { chunk, groupBy } from "../lib/chunk";
import { log } from "../lib/log";
import { type OrderMessage, type OrderRefundedMessage, orderMessage, orderRefundedMessage } from "../lib/order";
import type { OrderStore } from "../lib/order-rows";
import { shardFor } from "../lib/shards";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryAllLater } from "./consume";
import type { NotificationMessage } from "./notifications";
import { consumeRefundedOrders } from "./order-refunds";

/** The orders queue carries paid orders and their refunds (the shard's copy follows the Inventory DO). */
const ordersQueueMessage = z.union([orderMessage, orderRefundedMessage]);

/** The messages that follow a stored order: the buyer's confirmation and the `order.paid` analytics event. */
function followUps(order: OrderMessage, shard: string): { notification: NotificationMessage; event: AnalyticsEvent } {
  return {
    notification: {
      v: 1,
      kind: "order.confirmation",
      orderId: order.orderId,
      userId: order.userId,
      eventId: order.eventId,
      shard,
      total: order.total,
      currency: order.currency,
      tickets: order.tickets.length,
      ticketList: order.tickets.map((t) => ({ id: t.id, seat: t.seat })),
      ...(order.organizerId ? { organizerId: order.organizerId } : {}),
      ...(order.traceparent ? { traceparent: order.traceparent } : {}),
    },
    event: analyticsEvent({
      id: `order.paid:${order.orderId}`,
      kind: "order.paid",
      eventId: order.eventId,
      at: order.paidAt,
      userId: order.userId,
      quantity: order.quantity,
      amount: order.total,
    }),
  };
}

function logStored(order: OrderMessage, shard: string, result: "inserted" | "exists"): void {
  log.info("order stored", { orderId: order.orderId, shard, result, traceId: order.traceparent?.split("-")[1] });
}

/**
 * Writes one paid order to the shard that owns its buyer, then queues its confirmation and its analytics
 * event. Idempotent. The synchronous comparison mode (`CHECKOUT_WRITE=sync`) uses it; the consumer does
 * the same per batch.
 */
export async function storeOrder(
  order: OrderMessage,
  deps: Pick<OrdersConsumerDeps, "shards" | "store" | "notifications" | "analytics">,
): Promise<void> {
  const shard = shardFor(order.userId, deps.shards);
  const result = await deps.store(shard).saveOrder(order);
  const { notification, event } = followUps(order, shard);
  await Promise.all([deps.notifications.send(notification, { contentType: "json" }), deps.analytics.send(event, { contentType: "json" })]);
  logStored(order, shard, result);
}

/** What the orders consumer needs. */
export interface OrdersConsumerDeps {
  /** The shard list (`ORDER_SHARDS`), in order. */
  shards: string[];
  /** The store of a shard. */
  store: (shard: string) => OrderStore;
  notifications: Queue;
  analytics: Queue;
  /** Records a message that can never succeed (invalid) as a dead letter at once. */
  deadLetter: DeadLetterSink;
  /**
   * Tells the Inventory DOs that recorded these orders that their shard has them, so they leave the DO's
   * outbox (which re-sends an order until this confirmation arrives).
   */
  confirmStored: (orderIds: string[]) => Promise<void>;
  /** The same for refunds (they leave the DO's refund outbox; without it the outbox re-sends, harmlessly). */
  confirmRefunds?: (refunds: { orderId: string; refundKey: string }[]) => Promise<void>;
}

interface Pending {
  msg: Message;
  order: OrderMessage;
  shard: string;
}

/**
 * Persists each paid order to the shard that owns its buyer, then hands on the buyer confirmation and
 * the analytics event. Idempotent: a replayed message finds its rows and changes nothing.
 *
 * Per batch: each shard's orders are written in one call (`saveOrders`: one D1 `batch()`, a single
 * round trip and transaction, per 50 orders) and the shards side by side; a shard whose write fails has
 * all its messages retried with exponential backoff and full jitter (after max_retries Queues moves them
 * to the dead-letter queue). The follow-up messages of the stored orders go out in two `sendBatch` calls, and
 * only then are those orders acknowledged; if that hand-off fails they are retried too (their rows are
 * already there, so the retry only re-sends, and the downstream consumers deduplicate). Stored orders are
 * confirmed back to their Inventory DOs; a failed confirmation is logged and the DO's outbox sends the
 * order again later, which only confirms it again.
 */
export async function consumeOrders(batch: MessageBatch, deps: OrdersConsumerDeps): Promise<void> {
  const paid: Pending[] = [];
  const refunds: { msg: Message; refund: OrderRefundedMessage }[] = [];
  for (const msg of batch.messages) {
    const order = await parseOrDeadLetter(ordersQueueMessage, batch.queue, msg, deps.deadLetter);
    if (!order) continue;
    if (order.kind === "order.refunded") refunds.push({ msg, refund: order });
    else paid.push({ msg, order, shard: shardFor(order.userId, deps.shards) });
  }
  const byShard = groupBy(paid, (p) => p.shard);
  const stored: Pending[] = [];
  // Paid orders first: a refund in the same batch then finds its order in the shard.
  const storing = Promise.all(
    [...byShard].map(async ([shard, pending]) => {
      // One write per shard for the whole batch (all or nothing): a failure retries every order of it.
      let results: ("inserted" | "exists")[];
      try {
        results = await deps.store(shard).saveOrders(pending.map((p) => p.order));
      } catch (err) {
        retryAllLater(
          batch.queue,
          pending.map((p) => ({ msg: p.msg, id: p.order.orderId })),
          { shard },
          err,
        );
        return;
      }
      pending.forEach((p, i) => {
        logStored(p.order, shard, results[i] ?? "exists");
        stored.push(p);
      });
    }),
  );
  await storing;
  if (refunds.length)
    await consumeRefundedOrders(batch.queue, refunds, { ...deps, confirmRefunds: deps.confirmRefunds ?? (async () => {}) });
  if (!stored.length) return;
  try {
    const unique = [...new Map(stored.map((p) => [p.order.orderId, followUps(p.order, p.shard)])).values()];
    for (const part of chunk(unique, 100)) {
      await deps.notifications.sendBatch(part.map((f) => ({ body: f.notification, contentType: "json" as const })));
      await deps.analytics.sendBatch(part.map((f) => ({ body: f.event, contentType: "json" as const })));
    }
  } catch (err) {
    retryAllLater(
      batch.queue,
      stored.map((p) => ({ msg: p.msg, id: p.order.orderId })),
      { step: "hand-off" },
      err,
    );
    return;
  }
  try {
    await deps.confirmStored([...new Set(stored.map((p) => p.order.orderId))]);
  } catch (err) {
    log.warn("stored orders not confirmed to their inventory; its outbox re-sends them", { count: stored.length, error: String(err) });
  }
  for (const p of stored) acknowledge(batch.queue, p.msg);
}

import { z } from "zod";
import { metrics } from "../lib/metrics";
import type { OrderStore } from "../lib/order-store";
import { shardFor } from "../lib/shards";
import { type AnalyticsEvent, analyticsEvent } from "./analytics";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryLater } from "./consume";
import type { NotificationMessage } from "./notifications";

/** The orders queue message: a paid order, as the Inventory DO recorded it. Producer and consumer share it. */
export const orderMessage = z.object({
  v: z.literal(1),
  kind: z.literal("order.paid"),
  orderId: z.string().min(1),
  userId: z.string().min(1),
  eventId: z.string().min(1),
  sectionId: z.string().min(1),
  holdId: z.string().min(1),
  seats: z.array(z.string()),
  quantity: z.number().int().positive(),
  total: z.number().int().nonnegative(),
  currency: z.string().length(3),
  tickets: z.array(z.object({ id: z.string(), seat: z.string(), code: z.string() })).min(1),
  paidAt: z.iso.datetime({ offset: true }),
  payment: z.object({ provider: z.string(), chargeId: z.string() }),
  organizerId: z.string().optional(),
  traceparent: z.string().optional(),
});
export type OrderMessage = z.output<typeof orderMessage>;

/** Validates, then sends an order message. */
export async function sendOrder(queue: Queue, msg: OrderMessage): Promise<void> {
  await queue.send(orderMessage.parse(msg), { contentType: "json" });
  metrics.inc("breakwater_queue_messages_total", { queue: "orders", action: "sent" }, 1, "Queue messages by outcome");
}

/**
 * Writes one paid order to the shard that owns its buyer, then queues its confirmation and its analytics
 * event. Idempotent. Used by the consumer (write-behind) and by the synchronous comparison mode.
 */
export async function storeOrder(
  order: OrderMessage,
  deps: Pick<OrdersConsumerDeps, "shards" | "store" | "notifications" | "analytics">,
): Promise<void> {
  const shard = shardFor(order.userId, deps.shards);
  const result = await deps.store(shard).saveOrder(order);
  const notification: NotificationMessage = {
    v: 1,
    kind: "order.confirmation",
    orderId: order.orderId,
    userId: order.userId,
    eventId: order.eventId,
    shard,
    total: order.total,
    currency: order.currency,
    tickets: order.tickets.length,
    ...(order.organizerId ? { organizerId: order.organizerId } : {}),
    ...(order.traceparent ? { traceparent: order.traceparent } : {}),
  };
  const event: AnalyticsEvent = analyticsEvent({
    id: `order.paid:${order.orderId}`,
    kind: "order.paid",
    eventId: order.eventId,
    at: order.paidAt,
    userId: order.userId,
    quantity: order.quantity,
    amount: order.total,
  });
  await Promise.all([deps.notifications.send(notification, { contentType: "json" }), deps.analytics.send(event, { contentType: "json" })]);
  console.log(
    JSON.stringify({
      level: "info",
      msg: "order stored",
      orderId: order.orderId,
      shard,
      result,
      traceId: order.traceparent?.split("-")[1],
    }),
  );
}

/** What the orders consumer needs. */
export interface OrdersConsumerDeps {
  shards: string[];
  store: (shard: string) => OrderStore;
  notifications: Queue;
  analytics: Queue;
  /** Records a message that can never succeed (invalid) as a dead letter at once. */
  deadLetter: DeadLetterSink;
}

/**
 * Persists each paid order to the shard that owns its buyer, then hands on the buyer confirmation and
 * the analytics event. Idempotent (replays change nothing). A failure retries that message with
 * exponential backoff and full jitter; after max_retries Queues moves it to the dead-letter queue.
 */
export async function consumeOrders(batch: MessageBatch, deps: OrdersConsumerDeps): Promise<void> {
  for (const msg of batch.messages) {
    const order = await parseOrDeadLetter(orderMessage, batch.queue, msg, deps.deadLetter);
    if (!order) continue;
    try {
      await storeOrder(order, deps);
      acknowledge(batch.queue, msg);
    } catch (err) {
      retryLater(batch.queue, msg, { orderId: order.orderId, shard: shardFor(order.userId, deps.shards) }, err);
    }
  }
}

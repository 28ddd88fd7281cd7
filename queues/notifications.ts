import { z } from "zod";
import { confirmationMail, type MailAdapter } from "../lib/mail";
import type { WebhookPublisher } from "../lib/webhooks";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryLater } from "./consume";

/** The notifications queue message: one paid order to confirm to its buyer and announce to its organizer. */
export const notificationMessage = z.object({
  v: z.literal(1),
  kind: z.literal("order.confirmation"),
  orderId: z.string().min(1),
  userId: z.string().min(1),
  eventId: z.string().min(1),
  /** The buyer's order shard (where the local mail adapter keeps the outbox). */
  shard: z.string().min(1),
  total: z.number().int().nonnegative(),
  currency: z.string().length(3),
  tickets: z.number().int().positive(),
  organizerId: z.string().optional(),
  traceparent: z.string().optional(),
});
export type NotificationMessage = z.output<typeof notificationMessage>;

/** What the notifications consumer needs. */
export interface NotificationsConsumerDeps {
  mail: MailAdapter;
  /** Null when no webhook URL is configured. */
  webhooks: WebhookPublisher | null;
  webhookUrl: string | null;
  deadLetter: DeadLetterSink;
}

/** The organizer webhook body of a paid order. */
export const orderPaidWebhook = (n: NotificationMessage): Record<string, unknown> => ({
  type: "order.paid",
  orderId: n.orderId,
  eventId: n.eventId,
  total: n.total,
  currency: n.currency,
  tickets: n.tickets,
  ...(n.organizerId ? { organizerId: n.organizerId } : {}),
});

/**
 * Confirms each order to its buyer (mail adapter, idempotent per order) and announces it to the organizer
 * (QStash webhook, deduplicated by order id, so a redelivered message does not post twice). A failure of
 * either retries the message with exponential backoff and full jitter (the mail step is then a no-op);
 * after max_retries it ends in the dead-letter queue. Invalid messages are dead letters at once.
 */
export async function consumeNotifications(batch: MessageBatch, deps: NotificationsConsumerDeps): Promise<void> {
  for (const msg of batch.messages) {
    const n = await parseOrDeadLetter(notificationMessage, batch.queue, msg, deps.deadLetter);
    if (!n) continue;
    try {
      await deps.mail.send(confirmationMail(n), n.shard);
      if (deps.webhooks && deps.webhookUrl) await deps.webhooks.publish(deps.webhookUrl, orderPaidWebhook(n), `order.paid:${n.orderId}`);
      acknowledge(batch.queue, msg);
    } catch (err) {
      retryLater(batch.queue, msg, { orderId: n.orderId }, err);
    }
  }
}

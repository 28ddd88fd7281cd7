import { Client } from "@upstash/qstash";
import { z } from "zod";
import type { OrderStore } from "../lib/order-store";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryLater } from "./consume";

/** The notifications queue message: one paid order to confirm to its buyer and announce to its organizer. */
export const notificationMessage = z.object({
  v: z.literal(1),
  kind: z.literal("order.confirmation"),
  orderId: z.string().min(1),
  userId: z.string().min(1),
  eventId: z.string().min(1),
  shard: z.string().min(1),
  total: z.number().int(),
  currency: z.string(),
  tickets: z.number().int().positive(),
  organizerId: z.string().optional(),
  traceparent: z.string().optional(),
});
export type NotificationMessage = z.output<typeof notificationMessage>;

/** Sends a buyer's confirmation. Locally (and by default) the outbox table of the buyer's shard is the mailbox. */
export interface MailAdapter {
  send(mail: { orderId: string; userId: string; subject: string; body: string }, shard: string): Promise<"sent" | "already_sent">;
}

/** The local mail adapter: writes the confirmation to the shard's `mail_outbox` (idempotent per order). */
export const outboxMail = (store: (shard: string) => OrderStore): MailAdapter => ({
  send: (mail, shard) => store(shard).recordMail(mail),
});

/** Publishes organizer webhooks (QStash signs and retries the delivery). */
export interface WebhookPublisher {
  publish(url: string, body: Record<string, unknown>, deduplicationId: string): Promise<string>;
}

/** QStash publisher; `baseUrl` points tests at a loopback stand-in. */
export function qstashPublisher(token: string, baseUrl?: string): WebhookPublisher {
  const client = new Client({ token, ...(baseUrl ? { baseUrl } : {}) });
  return {
    async publish(url, body, deduplicationId) {
      const res = await client.publishJSON({ url, body, deduplicationId, retries: 3 });
      return "messageId" in res ? res.messageId : JSON.stringify(res);
    },
  };
}

/** What the notifications consumer needs. */
export interface NotificationsConsumerDeps {
  mail: MailAdapter;
  webhooks: WebhookPublisher | null;
  webhookUrl: string | null;
  deadLetter: DeadLetterSink;
}

/**
 * Confirms each order to its buyer (mail adapter) and announces it to the organizer (QStash webhook,
 * deduplicated by order id, so a redelivered message does not post twice). Retries with backoff and
 * jitter; ends in the dead-letter queue after max_retries.
 */
export async function consumeNotifications(batch: MessageBatch, deps: NotificationsConsumerDeps): Promise<void> {
  for (const msg of batch.messages) {
    const n = await parseOrDeadLetter(notificationMessage, batch.queue, msg, deps.deadLetter);
    if (!n) continue;
    try {
      await deps.mail.send(
        {
          orderId: n.orderId,
          userId: n.userId,
          subject: `Your tickets: order ${n.orderId}`,
          body: `Thank you! ${n.tickets} ticket(s) for event ${n.eventId}. Total ${n.total} ${n.currency} (minor units).`,
        },
        n.shard,
      );
      if (deps.webhooks && deps.webhookUrl)
        await deps.webhooks.publish(
          deps.webhookUrl,
          { type: "order.paid", orderId: n.orderId, eventId: n.eventId, total: n.total, currency: n.currency, tickets: n.tickets },
          `order.paid:${n.orderId}`,
        );
      acknowledge(batch.queue, msg);
    } catch (err) {
      retryLater(batch.queue, msg, { orderId: n.orderId }, err);
    }
  }
}

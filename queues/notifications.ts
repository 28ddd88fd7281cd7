import { z } from "zod";
import { confirmationMail, type MailAdapter } from "../lib/mail";
import {
  deliverOrganizerEvent,
  type OrganizerDeliveryDeps,
  type OrganizerEventMessage,
  organizerEventMessage,
} from "../lib/organizer-webhooks";
import type { WebhookPublisher } from "../lib/webhooks";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryLater } from "./consume";

/** One paid order to confirm to its buyer and announce to its organizer. */
export const orderConfirmationMessage = z.object({
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
export type OrderConfirmationMessage = z.output<typeof orderConfirmationMessage>;

/**
 * The notifications queue message: an order confirmation (mail + `order.paid` webhooks), or an event for
 * an organizer's webhook (`organizer.event`: refunds, check-ins, cancellations, sold out; lib/organizer-webhooks).
 */
export const notificationMessage = z.discriminatedUnion("kind", [orderConfirmationMessage, organizerEventMessage]);
export type NotificationMessage = z.output<typeof notificationMessage>;

/** What the notifications consumer needs. */
export interface NotificationsConsumerDeps {
  mail: MailAdapter;
  /** Null when no webhook URL is configured. */
  webhooks: WebhookPublisher | null;
  webhookUrl: string | null;
  /** Webhooks per organizer (their endpoints and the event → organizer lookup). */
  organizers: OrganizerDeliveryDeps;
  deadLetter: DeadLetterSink;
}

/** The `order.paid` organizer event of a confirmation. */
export const orderPaidEvent = (n: OrderConfirmationMessage, occurredAt: string): OrganizerEventMessage => ({
  v: 1,
  kind: "organizer.event",
  id: `order.paid:${n.orderId}`,
  type: "order.paid",
  eventId: n.eventId,
  ...(n.organizerId ? { organizerId: n.organizerId } : {}),
  occurredAt,
  data: { orderId: n.orderId, total: n.total, currency: n.currency, tickets: n.tickets },
  ...(n.traceparent ? { traceparent: n.traceparent } : {}),
});

/** The organizer webhook body of a paid order. */
export const orderPaidWebhook = (n: OrderConfirmationMessage): Record<string, unknown> => ({
  type: "order.paid",
  orderId: n.orderId,
  eventId: n.eventId,
  total: n.total,
  currency: n.currency,
  tickets: n.tickets,
  ...(n.organizerId ? { organizerId: n.organizerId } : {}),
});

/**
 * Confirms each order to its buyer (mail adapter, idempotent per order) and announces it to the
 * deployment-wide URL (ORGANIZER_WEBHOOK_URL, when set) and to the event organizer's own endpoint when it
 * subscribed to `order.paid`; delivers the other organizer events the same way. Webhooks go through QStash,
 * deduplicated per delivery, so a redelivered message does not post twice. A failure of any step retries
 * the message with exponential backoff and full jitter (the mail step is then a no-op); after max_retries
 * it ends in the dead-letter queue. Invalid messages are dead letters at once.
 */
export async function consumeNotifications(batch: MessageBatch, deps: NotificationsConsumerDeps): Promise<void> {
  for (const msg of batch.messages) {
    const n = await parseOrDeadLetter(notificationMessage, batch.queue, msg, deps.deadLetter);
    if (!n) continue;
    try {
      if (n.kind === "organizer.event") await deliverOrganizerEvent(deps.organizers, n);
      else {
        await deps.mail.send(confirmationMail(n), n.shard);
        if (deps.webhooks && deps.webhookUrl) await deps.webhooks.publish(deps.webhookUrl, orderPaidWebhook(n), `order.paid:${n.orderId}`);
        await deliverOrganizerEvent(deps.organizers, orderPaidEvent(n, msg.timestamp.toISOString()));
      }
      acknowledge(batch.queue, msg);
    } catch (err) {
      retryLater(batch.queue, msg, n.kind === "organizer.event" ? { delivery: n.id } : { orderId: n.orderId }, err);
    }
  }
}

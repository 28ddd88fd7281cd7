import { z } from "zod";
import { buyerNoticeMessage } from "../lib/buyer-notices";
import { forEachConcurrent, groupBy } from "../lib/chunk";
import { log } from "../lib/log";
import { confirmationMail, type MailAdapter, sendAllMail } from "../lib/mail";
import { MailRejectedError, type MailSender } from "../lib/mail-sender";
import { cancellationNotice, orderConfirmation, type Rendered, refundNotice } from "../lib/mail-templates";
import {
  deliverOrganizerEvent,
  type OrganizerDeliveryDeps,
  type OrganizerEventMessage,
  organizerEventMessage,
  withWebhooksReadOnce,
} from "../lib/organizer-webhooks";
import { qrLinkSignature } from "../lib/tickets";
import type { WebhookPublisher } from "../lib/webhooks";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryLater } from "./consume";

/**
 * Messages of a batch handled at once: a mail or webhook call waits on the network, so one after another
 * a 50-message batch would take 50 round trips; a few at a time stays inside a mail provider's request rate.
 */
const NOTIFY_CONCURRENCY = 8;

/** One paid order to confirm to its buyer and announce to its organizer. */
const orderConfirmationMessage = z.object({
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
  /** The tickets themselves (id and seat), for the mail's QR links; older messages carry only the count. */
  ticketList: z.array(z.object({ id: z.string().min(1), seat: z.string().min(1) })).optional(),
  organizerId: z.string().optional(),
  traceparent: z.string().optional(),
});
export type OrderConfirmationMessage = z.output<typeof orderConfirmationMessage>;

/**
 * The notifications queue message: an order confirmation (mail + `order.paid` webhooks), an event for an
 * organizer's webhook (`organizer.event`: refunds, check-ins, cancellations, sold out; lib/organizer-webhooks),
 * or a notice to a buyer (`buyer.notice`: refund, cancellation; lib/buyer-notices).
 */
const notificationMessage = z.discriminatedUnion("kind", [orderConfirmationMessage, organizerEventMessage, buyerNoticeMessage]);
export type NotificationMessage = z.output<typeof notificationMessage>;

/** What the notifications consumer needs. */
export interface NotificationsConsumerDeps {
  /** The confirmation's record in the buyer's shard (`mail_outbox`, one per order). */
  mail: MailAdapter;
  /** Sends the rendered mails (HTTP e-mail API, or the local mailbox); null when mail is not configured. */
  sender: MailSender | null;
  /** Public base URL of the API, for links in mails (QR codes). */
  baseUrl: string;
  /** SIGNING_SECRET: signs the mail's QR-code links, which open without the buyer's token. */
  signingSecret: string;
  /** Null when no webhook URL is configured. */
  webhooks: WebhookPublisher | null;
  webhookUrl: string | null;
  /** Webhooks per organizer (their endpoints and the event → organizer lookup). */
  organizers: OrganizerDeliveryDeps;
  deadLetter: DeadLetterSink;
}

/** The `order.paid` organizer event of a confirmation. */
const orderPaidEvent = (n: OrderConfirmationMessage, occurredAt: string): OrganizerEventMessage => ({
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
const orderPaidWebhook = (n: OrderConfirmationMessage): Record<string, unknown> => ({
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
 * it ends in the dead-letter queue. Invalid messages are dead letters at once. Up to
 * {@link NOTIFY_CONCURRENCY} messages are handled at a time, each acknowledged or retried on its own.
 */
export async function consumeNotifications(batch: MessageBatch, deps: NotificationsConsumerDeps): Promise<void> {
  // Each organizer's webhook settings are read once per batch, not once per message.
  const organizers = withWebhooksReadOnce(deps.organizers);
  const parsed: { msg: Message; n: NotificationMessage }[] = [];
  for (const msg of batch.messages) {
    const n = await parseOrDeadLetter(notificationMessage, batch.queue, msg, deps.deadLetter);
    if (n) parsed.push({ msg, n });
  }
  const unrecorded = await recordConfirmations(deps.mail, parsed);
  await forEachConcurrent(parsed, NOTIFY_CONCURRENCY, async ({ msg, n }) => {
    try {
      if (n.kind === "organizer.event") await deliverOrganizerEvent(organizers, n);
      else if (n.kind === "buyer.notice") {
        const rendered =
          n.notice === "order.refunded"
            ? refundNotice({
                orderId: n.orderId,
                amount: n.amount,
                currency: n.currency,
                tickets: n.tickets,
                ...(n.reason ? { reason: n.reason } : {}),
              })
            : cancellationNotice({
                orderId: n.orderId,
                eventId: n.eventId,
                ...(n.eventName ? { eventName: n.eventName } : {}),
                amount: n.amount,
                currency: n.currency,
              });
        await sendMail(deps, n.id, n.userId, rendered);
      } else {
        // Recorded in the buyer's outbox with the rest of the batch (recordConfirmations), or its failure.
        if (unrecorded.has(msg)) throw unrecorded.get(msg);
        if (n.ticketList)
          await sendMail(
            deps,
            `order.confirmation:${n.orderId}`,
            n.userId,
            orderConfirmation(
              {
                orderId: n.orderId,
                eventId: n.eventId,
                total: n.total,
                currency: n.currency,
                tickets: await Promise.all(n.ticketList.map(async (t) => ({ ...t, sig: await qrLinkSignature(deps.signingSecret, t.id) }))),
              },
              deps.baseUrl,
            ),
          );
        if (deps.webhooks && deps.webhookUrl) await deps.webhooks.publish(deps.webhookUrl, orderPaidWebhook(n), `order.paid:${n.orderId}`);
        await deliverOrganizerEvent(organizers, orderPaidEvent(n, msg.timestamp.toISOString()));
      }
      acknowledge(batch.queue, msg);
    } catch (err) {
      if (err instanceof MailRejectedError) {
        // The provider refused the mail: retrying cannot help. A dead letter an admin can inspect and replay.
        try {
          await deps.deadLetter(batch.queue, msg, err.message);
          acknowledge(batch.queue, msg);
          return;
        } catch {
          // The dead letter could not be recorded: retry (the DLQ takes it after max_retries).
        }
      }
      retryLater(
        batch.queue,
        msg,
        n.kind === "organizer.event" || n.kind === "buyer.notice" ? { delivery: n.id } : { orderId: n.orderId },
        err,
      );
    }
  });
}

/**
 * Records the batch's order confirmations in their buyers' outboxes, one call per shard. Returns the
 * error of each message whose shard's call failed (that message is retried; the others go on).
 */
async function recordConfirmations(mail: MailAdapter, parsed: { msg: Message; n: NotificationMessage }[]): Promise<Map<Message, unknown>> {
  const confirmations = parsed.flatMap(({ msg, n }) => (n.kind === "order.confirmation" ? [{ msg, n }] : []));
  const byShard = groupBy(confirmations, (c) => c.n.shard);
  const failed = new Map<Message, unknown>();
  await Promise.all(
    [...byShard].map(async ([shard, items]) => {
      try {
        await sendAllMail(
          mail,
          items.map((i) => confirmationMail(i.n)),
          shard,
        );
      } catch (err) {
        for (const i of items) failed.set(i.msg, err);
      }
    }),
  );
  return failed;
}

/**
 * Sends one rendered mail to a buyer. The buyer's address is their user id when that is an e-mail address
 * (identity providers that use the address as `sub`); otherwise only the local mailbox takes it (it keeps
 * mail for developers), and a real provider is skipped with a warning.
 */
async function sendMail(deps: NotificationsConsumerDeps, id: string, userId: string, rendered: Rendered): Promise<void> {
  if (!deps.sender) {
    log.warn("mail not configured; not sent", { mailId: id });
    return;
  }
  const address = /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(userId) ? userId : null;
  if (!address && deps.sender.name !== "dev-mailbox") {
    log.warn("buyer has no e-mail address; mail not sent", { mailId: id, userId });
    return;
  }
  await deps.sender.send({ id, to: address ?? `${userId} (no address)`, ...rendered });
}

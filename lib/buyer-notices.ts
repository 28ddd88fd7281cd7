import { z } from "zod";

/**
 * Buyer notices after the sale (refund, cancellation), as producers (the refund and cancellation code)
 * queue them on the notifications queue with {@link sendBuyerNotice}; the notifications consumer renders
 * them (lib/mail-templates.ts) and sends them (lib/mail-sender.ts), retrying and dead-lettering like every
 * notification.
 */
export const buyerNoticeMessage = z.object({
  v: z.literal(1),
  kind: z.literal("buyer.notice"),
  notice: z.enum(["order.refunded", "event.cancelled"]),
  /** The mail's id: stable per occurrence (e.g. `order.refunded:<orderId>:<refund key>`), so a repeat is sent once. */
  id: z.string().min(1).max(300),
  orderId: z.string().min(1).max(200),
  userId: z.string().min(1).max(200),
  eventId: z.string().min(1).max(200),
  eventName: z.string().max(200).optional(),
  /** The amount refunded (minor units). */
  amount: z.number().int().nonnegative(),
  currency: z.string().length(3),
  /** The tickets that became void. */
  tickets: z.array(z.string().min(1)).default([]),
  reason: z.string().max(500).optional(),
  traceparent: z.string().optional(),
});
export type BuyerNoticeMessage = z.input<typeof buyerNoticeMessage>;

/** Queues buyer notices (validated first: a bad producer fails loudly). */
export async function sendBuyerNotice(queue: Queue, notices: BuyerNoticeMessage[]): Promise<void> {
  if (!notices.length) return;
  await queue.sendBatch(notices.map((n) => ({ body: buyerNoticeMessage.parse(n), contentType: "json" as const })));
}

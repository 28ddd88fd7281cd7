import type { OrderStore } from "./order-rows";

/**
 * Buyer mail behind one interface. The default adapter is an outbox: the confirmation is written to the
 * `mail_outbox` table of the buyer's own order shard (D1 or Postgres), next to the order it confirms.
 * Why the shard and not the catalog: it scales with the shards like the orders do (the single catalog D1
 * runs one query at a time and serves the catalog), "the mails of a buyer" stays a one-shard query, and a
 * mail provider's relay can drain each shard's outbox on its own. A provider adapter (an HTTP mail API)
 * implements the same `send`, passing the order id as its idempotency key.
 */

/** One confirmation mail. */
export interface Mail {
  orderId: string;
  userId: string;
  subject: string;
  body: string;
}

/** Sends a buyer's mail; idempotent per order (`already_sent` for a repeat). */
export interface MailAdapter {
  send(mail: Mail, shard: string): Promise<"sent" | "already_sent">;
  /** {@link send} for several mails of one shard at once (a consumer batch); one answer each, in order. */
  sendAll?(mails: readonly Mail[], shard: string): Promise<("sent" | "already_sent")[]>;
}

/** The local (default) adapter: the outbox table of the buyer's shard (a batch's mails in one round trip). */
export const outboxMail = (store: (shard: string) => Pick<OrderStore, "recordMail" | "recordMails">): MailAdapter => ({
  send: (mail, shard) => store(shard).recordMail(mail),
  sendAll: (mails, shard) => store(shard).recordMails(mails),
});

/** Sends `mails` of one shard through `adapter`: in one call when it can, else one by one. */
export function sendAllMail(adapter: MailAdapter, mails: readonly Mail[], shard: string): Promise<("sent" | "already_sent")[]> {
  return adapter.sendAll ? adapter.sendAll(mails, shard) : Promise.all(mails.map((m) => adapter.send(m, shard)));
}

/** The confirmation of a paid order. */
export function confirmationMail(o: {
  orderId: string;
  userId: string;
  eventId: string;
  tickets: number;
  total: number;
  currency: string;
}): Mail {
  return {
    orderId: o.orderId,
    userId: o.userId,
    subject: `Your tickets: order ${o.orderId}`,
    body: `Thank you! ${o.tickets} ticket(s) for event ${o.eventId}. Total ${o.total} ${o.currency} (minor units).`,
  };
}

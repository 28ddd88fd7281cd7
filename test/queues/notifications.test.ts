import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Mail, MailAdapter } from "../../lib/mail";
import { type MailSender, MailUnavailableError } from "../../lib/mail-sender";
import type { WebhookPublisher } from "../../lib/webhooks";
import { consumeNotifications, type NotificationsConsumerDeps, type OrderConfirmationMessage } from "../../queues/notifications";
import worker from "../../workers/index";
import { freshTag, recordingBatch } from "./helpers";

const note = (orderId: string, over: Partial<OrderConfirmationMessage> = {}): OrderConfirmationMessage => ({
  v: 1,
  kind: "order.confirmation",
  orderId,
  userId: "notify-buyer",
  eventId: "evt_notify0000000000000",
  shard: "SHARD_1",
  total: 9000,
  currency: "EUR",
  tickets: 2,
  ...over,
});

/** A mail adapter that remembers what it sent (and fails while told to). */
function memoryMail(fail = { on: false }): MailAdapter & { sent: Mail[] } {
  const sent: Mail[] = [];
  return {
    sent,
    async send(mail) {
      if (fail.on) throw new Error("mail provider unavailable");
      if (sent.some((m) => m.orderId === mail.orderId)) return "already_sent";
      sent.push(mail);
      return "sent";
    },
  };
}
function memoryWebhooks(
  fail = { on: false },
): WebhookPublisher & { published: { url: string; body: Record<string, unknown> | string; dedup: string }[] } {
  const published: { url: string; body: Record<string, unknown> | string; dedup: string }[] = [];
  return {
    published,
    async publish(url, body, dedup) {
      if (fail.on) throw new Error("QStash unavailable");
      published.push({ url, body, dedup });
      return `msg_${published.length}`;
    },
  };
}
const URL_ = "https://organizer.example/hooks";
/** No organizer has an endpoint of its own here (test/routes/organizer-webhooks.test.ts covers them). */
const organizers = { kv: env.CATALOG_KV, organizerOf: async () => null, publisher: memoryWebhooks() };

/** The consumer's dependencies: a memory mailbox, no webhook, no sender; `over` replaces any of them. */
const depsOf = (over: Partial<NotificationsConsumerDeps> = {}): NotificationsConsumerDeps => ({
  mail: memoryMail(),
  webhooks: null,
  webhookUrl: null,
  organizers,
  sender: null,
  baseUrl: "https://tickets.example",
  signingSecret: env.SIGNING_SECRET,
  deadLetter: async () => {},
  ...over,
});

describe("notifications consumer", () => {
  it("through the queue handler: the confirmation lands once in the outbox of the buyer's shard", async () => {
    const orderId = `ord_note_${freshTag()}`;
    for (const round of [1, 2]) {
      const batch = createMessageBatch("breakwater-notifications", [
        { id: `${orderId}-${round}`, timestamp: new Date(), attempts: 1, body: note(orderId) },
      ]);
      const ctx = createExecutionContext();
      await worker.queue(batch, env, ctx);
      expect((await getQueueResult(batch, ctx)).explicitAcks).toHaveLength(1);
    }
    const rows = await env.SHARD_1.prepare("SELECT user_id, subject, body, sent_at FROM mail_outbox WHERE order_id = ?")
      .bind(orderId)
      .all<{ user_id: string; subject: string; body: string; sent_at: string | null }>();
    expect(rows.results).toHaveLength(1);
    expect(rows.results[0]).toMatchObject({ user_id: "notify-buyer", subject: `Your tickets: order ${orderId}` });
    expect(rows.results[0]?.body).toContain("2 ticket(s)");
    expect(await env.SHARD_0.prepare("SELECT count(*) AS n FROM mail_outbox WHERE order_id = ?").bind(orderId).first("n")).toBe(0);
  });

  it("mails the buyer and posts the organizer webhook with the order id as deduplication id", async () => {
    const mail = memoryMail();
    const webhooks = memoryWebhooks();
    const { batch, outcomes } = recordingBatch("breakwater-notifications", [note("ord_n1", { organizerId: "org-7" })]);
    await consumeNotifications(batch, depsOf({ mail, webhooks, webhookUrl: URL_ }));
    expect(outcomes).toEqual([{ acked: true }]);
    expect(mail.sent.map((m) => m.orderId)).toEqual(["ord_n1"]);
    expect(webhooks.published).toEqual([
      {
        url: URL_,
        body: {
          type: "order.paid",
          orderId: "ord_n1",
          eventId: "evt_notify0000000000000",
          total: 9000,
          currency: "EUR",
          tickets: 2,
          organizerId: "org-7",
        },
        dedup: "order.paid:ord_n1",
      },
    ]);
  });

  it("without a webhook URL only mails", async () => {
    const mail = memoryMail();
    const { batch, outcomes } = recordingBatch("breakwater-notifications", [note("ord_n2")]);
    await consumeNotifications(batch, depsOf({ mail }));
    expect(outcomes).toEqual([{ acked: true }]);
    expect(mail.sent).toHaveLength(1);
  });

  it("retries with backoff when mail fails (no webhook yet), and when the webhook fails (the mail is not sent twice)", async () => {
    const mailDown = { on: true };
    const hookDown = { on: false };
    const mail = memoryMail(mailDown);
    const webhooks = memoryWebhooks(hookDown);
    const deps = depsOf({ mail, webhooks, webhookUrl: URL_ });
    const first = recordingBatch("breakwater-notifications", [note("ord_n3")], 1);
    await consumeNotifications(first.batch, deps);
    expect(first.outcomes[0]?.acked).toBe(false);
    expect(first.outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(1);
    expect(webhooks.published).toEqual([]);

    mailDown.on = false;
    hookDown.on = true;
    const second = recordingBatch("breakwater-notifications", [note("ord_n3")], 2);
    await consumeNotifications(second.batch, deps);
    expect(second.outcomes[0]?.acked).toBe(false);
    expect(second.outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(1);
    expect(mail.sent).toHaveLength(1);

    hookDown.on = false;
    const third = recordingBatch("breakwater-notifications", [note("ord_n3")], 3);
    await consumeNotifications(third.batch, deps);
    expect(third.outcomes).toEqual([{ acked: true }]);
    expect(mail.sent).toHaveLength(1);
    expect(webhooks.published).toHaveLength(1);
  });

  it("sends a batch's mails a few at a time, and retries only the message whose send failed", async () => {
    let inFlight = 0;
    let most = 0;
    const delivered: string[] = [];
    const sender: MailSender = {
      name: "test",
      async send(m) {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        if (m.id === "order.confirmation:ord_c7") throw new MailUnavailableError("provider 503");
        delivered.push(m.id);
      },
    };
    const bodies = Array.from({ length: 20 }, (_, i) =>
      note(`ord_c${i}`, { userId: `buyer${i}@example.com`, ticketList: [{ id: `tkt_c${i}`, seat: "GA" }] }),
    );
    const { batch, outcomes } = recordingBatch("breakwater-notifications", bodies);
    await consumeNotifications(batch, depsOf({ sender }));
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(8);
    expect(outcomes.filter((o) => o.acked)).toHaveLength(19);
    expect(outcomes[7]).toMatchObject({ acked: false, retry: { delaySeconds: expect.any(Number) } });
    expect(delivered.sort()).toEqual(
      bodies
        .filter((_, i) => i !== 7)
        .map((b) => `order.confirmation:${b.orderId}`)
        .sort(),
    );
  });

  it("dead-letters an invalid message at once, without mailing", async () => {
    const mail = memoryMail();
    const dead: string[] = [];
    const { batch, outcomes } = recordingBatch("breakwater-notifications", [{ ...note("ord_n4"), tickets: 0 }, { hello: "world" }]);
    await consumeNotifications(
      batch,
      depsOf({
        mail,
        deadLetter: async (_q, _m, e) => {
          dead.push(e);
        },
      }),
    );
    expect(outcomes).toEqual([{ acked: true }, { acked: true }]);
    expect(dead).toHaveLength(2);
    expect(dead[0]).toContain("tickets");
    expect(mail.sent).toEqual([]);
  });
});

import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { BuyerNoticeMessage } from "../../lib/buyer-notices";
import { httpMailSender, type KeptMail, MailRejectedError, MailUnavailableError, type OutgoingMail } from "../../lib/mail-sender";
import { money, orderConfirmation, qrLink } from "../../lib/mail-templates";
import { consumeNotifications } from "../../queues/notifications";
import { app } from "../../workers/app";
import worker from "../../workers/index";
import { call, createEvent, type EventBody, tokenFor } from "../helpers";
import { recordingBatch } from "./helpers";

const mailbox = async (): Promise<KeptMail[]> => ((await (await call("/dev/mailbox.json")).json()) as { mails: KeptMail[] }).mails;
async function waitForMail(id: string): Promise<KeptMail | undefined> {
  for (let i = 0; i < 60; i++) {
    const found = (await mailbox()).find((m) => m.id === id);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 250));
  }
  return undefined;
}

let ev: EventBody;
beforeAll(async () => {
  ev = await createEvent(await tokenFor("org-mail", "organizer"), { perCustomerLimit: 10 });
});

describe("mail templates", () => {
  it("lists every ticket with a link to its QR code and escapes what it shows", () => {
    const m = orderConfirmation(
      {
        orderId: "ord_1",
        eventId: "evt_1",
        eventName: "<script>alert(1)</script> Night",
        total: 16_000,
        currency: "EUR",
        tickets: [
          { id: "tkt_a_1", seat: "1-1" },
          { id: "tkt_a_2", seat: "1-2" },
        ],
      },
      "https://tickets.example/",
    );
    expect(m.text).toContain("https://tickets.example/v1/tickets/tkt_a_1/qr.svg");
    expect(m.html).toContain('href="https://tickets.example/v1/tickets/tkt_a_2/qr.svg"');
    expect(m.text).toContain("160.00 EUR");
    expect(m.html).not.toContain("<script>");
    expect(m.html).toContain("&lt;script&gt;");
    expect(money(500, "JPY")).toBe("500 JPY");
    expect(qrLink("https://x.example", "a/b")).toBe("https://x.example/v1/tickets/a%2Fb/qr.svg");
    expect(qrLink("https://x.example/", "t", "ab.c+d")).toBe("https://x.example/v1/tickets/t/qr.svg?sig=ab.c%2Bd");
  });
});

describe("buyer mail through the notifications queue (local mailbox)", () => {
  it("mails the confirmation of a paid order with its tickets' QR links, visible on /dev/mailbox", async () => {
    const t = await tokenFor("mail-buyer-1");
    const hold = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token: t, json: { sectionId: "a", seats: ["1-3", "1-4"] } });
    const holdId = ((await hold.json()) as { hold: { id: string } }).hold.id;
    const res = await call("/v1/orders", { method: "POST", token: t, json: { holdId, payment: { method: "sandbox", token: "tok_ok" } } });
    const order = ((await res.json()) as { order: { id: string; tickets: { id: string }[] } }).order;
    const mail = await waitForMail(`order.confirmation:${order.id}`);
    expect(mail).toBeDefined();
    expect(mail?.to).toBe("mail-buyer-1 (no address)");
    for (const ticket of order.tickets) expect(mail?.html).toContain(`/v1/tickets/${ticket.id}/qr.svg?sig=`);
    // The links open in a mail client, which sends no token: each link's signature opens its QR code.
    const links = [...(mail?.text ?? "").matchAll(/https?:\/\/\S+\/qr\.svg\?sig=\S+/g)].map((m) => new URL(m[0]));
    expect(links).toHaveLength(order.tickets.length);
    for (const link of links) {
      const qr = await call(link.pathname + link.search);
      expect(qr.status, link.pathname).toBe(200);
      expect(qr.headers.get("Content-Type")).toBe("image/svg+xml; charset=utf-8");
    }
    expect(mail?.text).toContain("160.00 EUR");

    const page = await call("/dev/mailbox");
    expect(page.status).toBe(200);
    expect(page.headers.get("Content-Type")).toContain("text/html");
    expect(await page.text()).toContain(`order.confirmation:${order.id}`);
  });

  it("mails refund and cancellation notices once each, however often they are queued", async () => {
    const refund: BuyerNoticeMessage = {
      v: 1,
      kind: "buyer.notice",
      notice: "order.refunded",
      id: `order.refunded:ord_mail_r:${crypto.randomUUID()}`,
      orderId: "ord_mail_r",
      userId: "buyer@mail.example",
      eventId: ev.id,
      amount: 5_000,
      currency: "EUR",
      tickets: ["tkt_r_1"],
      reason: "requested by buyer",
    };
    const cancel: BuyerNoticeMessage = {
      ...refund,
      notice: "event.cancelled",
      id: `event.cancelled:${ev.id}:ord_mail_r`,
      eventName: "Night Drive",
    };
    const batch = createMessageBatch(
      "breakwater-notifications",
      [refund, refund, cancel].map((body, i) => ({ id: `mail-${i}`, timestamp: new Date(), attempts: 1, body })),
    );
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toHaveLength(3);
    const mails = (await mailbox()).filter((m) => m.id === refund.id || m.id === cancel.id);
    expect(mails.map((m) => m.subject).sort()).toEqual(["Cancelled: Night Drive", "Refund for order ord_mail_r"]);
    expect(mails.every((m) => m.to === "buyer@mail.example")).toBe(true);
    expect(mails.find((m) => m.id === refund.id)?.text).toContain("50.00 EUR");
  });

  it("has no mailbox page without DEV_AUTH", async () => {
    for (const path of ["/dev/mailbox", "/dev/mailbox.json"]) {
      const res = await app.fetch(new Request(`https://breakwater.test${path}`), { ...env, DEV_AUTH: "false" }, createExecutionContext());
      expect(res.status).toBe(404);
    }
  });
});

describe("the HTTP e-mail API sender", () => {
  const mail: OutgoingMail = { id: "order.confirmation:ord_h", to: "a@b.example", subject: "S", text: "T", html: "<p>H</p>" };
  function fakeApi(status: number) {
    const requests: { url: string; headers: Headers; body: string }[] = [];
    const fetcher = (async (input: RequestInfo | URL, init?: RequestInit) => {
      requests.push({ url: String(input), headers: new Headers(init?.headers), body: String(init?.body) });
      return new Response(JSON.stringify(status < 300 ? { id: "em_1" } : { message: "nope" }), { status });
    }) as typeof fetch;
    return { requests, sender: httpMailSender({ apiUrl: "https://mail.example/", apiKey: "re_test", from: "Box <t@x.example>", fetcher }) };
  }

  it("posts the mail with the key, the mail id as Idempotency-Key and the JSON body", async () => {
    const { requests, sender } = fakeApi(200);
    await sender.send(mail);
    expect(requests).toHaveLength(1);
    expect(requests[0]?.url).toBe("https://mail.example/emails");
    expect(requests[0]?.headers.get("Authorization")).toBe("Bearer re_test");
    expect(requests[0]?.headers.get("Idempotency-Key")).toBe(mail.id);
    expect(JSON.parse(requests[0]?.body ?? "{}")).toEqual({
      from: "Box <t@x.example>",
      to: ["a@b.example"],
      subject: "S",
      text: "T",
      html: "<p>H</p>",
    });
  });

  it("retries an outage and dead-letters a refusal at once", async () => {
    await expect(fakeApi(503).sender.send(mail)).rejects.toBeInstanceOf(MailUnavailableError);
    await expect(fakeApi(429).sender.send(mail)).rejects.toBeInstanceOf(MailUnavailableError);
    await expect(fakeApi(422).sender.send(mail)).rejects.toBeInstanceOf(MailRejectedError);

    const notice: BuyerNoticeMessage = {
      v: 1,
      kind: "buyer.notice",
      notice: "order.refunded",
      id: "order.refunded:ord_h:1",
      orderId: "ord_h",
      userId: "h@mail.example",
      eventId: ev.id,
      amount: 100,
      currency: "EUR",
    };
    const organizers = { kv: env.CATALOG_KV, organizerOf: async () => null, publisher: { publish: async () => "msg" } };
    const base = {
      mail: { send: async () => "sent" as const },
      webhooks: null,
      webhookUrl: null,
      organizers,
      baseUrl: "https://t.example",
      signingSecret: env.SIGNING_SECRET,
    };
    const down = recordingBatch("breakwater-notifications", [notice], 1);
    await consumeNotifications(down.batch, { ...base, sender: fakeApi(503).sender, deadLetter: async () => {} });
    expect(down.outcomes[0]?.acked).toBe(false);
    expect(down.outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(1);

    const dead: string[] = [];
    const refused = recordingBatch("breakwater-notifications", [notice], 1);
    await consumeNotifications(refused.batch, { ...base, sender: fakeApi(422).sender, deadLetter: async (_q, _m, e) => void dead.push(e) });
    expect(refused.outcomes).toEqual([{ acked: true }]);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toContain("422");
  });
});

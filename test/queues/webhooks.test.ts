import { env } from "cloudflare:workers";
import { sign } from "hono/utils/jwt/jwt";
import { describe, expect, it } from "vitest";
import { outboxMail } from "../../lib/mail";
import { d1Stores } from "../../lib/order-store";
import { b64url } from "../../lib/signing";
import { qstashPublisher, verifyWebhook } from "../../lib/webhooks";
import { consumeNotifications, type OrderConfirmationMessage } from "../../queues/notifications";
import type { QStashMockInfo } from "../setup/qstash-mock";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_QSTASH: QStashMockInfo;
    }
  }
}

const mock = env.TEST_QSTASH;
/** Events without an organizer endpoint: only the deployment-wide URL is posted. */
const noOrganizer = { kv: env.CATALOG_KV, organizerOf: async () => null, publisher: qstashPublisher("test-qstash-token", mock.url) };
const published = async () =>
  (await (await fetch(`${mock.url}/__published`)).json()) as { destination: string; headers: Record<string, string>; body: string }[];

function batchOf(bodies: unknown[], outcomes: Map<string, string>): MessageBatch {
  return {
    queue: "breakwater-notifications",
    messages: bodies.map((body, i) => ({
      id: `n-${i}-${Math.random()}`,
      timestamp: new Date(),
      attempts: 1,
      body,
      ack() {
        outcomes.set(this.id, "ack");
      },
      retry() {
        outcomes.set(this.id, "retry");
      },
    })),
    ackAll() {},
    retryAll() {},
  } as unknown as MessageBatch;
}

const note = (orderId: string): OrderConfirmationMessage => ({
  v: 1,
  kind: "order.confirmation",
  orderId,
  userId: "webhook-buyer",
  eventId: "evt_webhook000000000000",
  shard: "SHARD_0",
  total: 9000,
  currency: "EUR",
  tickets: 2,
});

describe("notifications: confirmation mail and organizer webhook through QStash", () => {
  it("writes the confirmation to the outbox once and publishes the webhook, deduplicated by order", async () => {
    const outcomes = new Map<string, string>();
    const deps = {
      mail: outboxMail(d1Stores(env)),
      webhooks: qstashPublisher("test-qstash-token", mock.url),
      webhookUrl: "https://organizer.example/hooks/breakwater",
      organizers: noOrganizer,
      sender: null,
      baseUrl: "https://tickets.example",
      signingSecret: env.SIGNING_SECRET,
      deadLetter: async () => {},
    };
    const batch = batchOf([note("ord_wh1"), note("ord_wh1")], outcomes);
    await consumeNotifications(batch, deps);
    expect([...outcomes.values()]).toEqual(["ack", "ack"]);
    const mails = await env.SHARD_0.prepare("SELECT order_id, sent_at FROM mail_outbox WHERE order_id = 'ord_wh1'").all();
    expect(mails.results).toHaveLength(1);
    const sent = (await published()).filter((p) => p.body.includes("ord_wh1"));
    expect(sent.length).toBe(2); // the redelivery publishes again, and QStash drops it by its deduplication id
    for (const p of sent) {
      expect(p.destination).toBe("https://organizer.example/hooks/breakwater");
      expect(p.headers["upstash-deduplication-id"]).toBe("order.paid:ord_wh1");
      expect(JSON.parse(p.body)).toMatchObject({ type: "order.paid", orderId: "ord_wh1", total: 9000 });
    }
  });

  it("retries when QStash fails", async () => {
    await fetch(`${mock.url}/__fail?n=1`, { method: "POST" });
    const outcomes = new Map<string, string>();
    await consumeNotifications(batchOf([note("ord_wh2")], outcomes), {
      mail: outboxMail(d1Stores(env)),
      webhooks: qstashPublisher("test-qstash-token", mock.url),
      webhookUrl: "https://organizer.example/hooks/breakwater",
      organizers: noOrganizer,
      sender: null,
      baseUrl: "https://tickets.example",
      signingSecret: env.SIGNING_SECRET,
      deadLetter: async () => {},
    });
    expect([...outcomes.values()]).toEqual(["retry"]);
  });
});

describe("webhook receiver: QStash signatures", () => {
  const keys = { current: "sig_current_key_0123456789", next: "sig_next_key_0123456789" };
  const url = "https://organizer.example/hooks/breakwater";
  async function qstashSignature(body: string, key: string, over: Record<string, unknown> = {}): Promise<string> {
    const hash = b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body))));
    const now = Math.floor(Date.now() / 1000);
    return sign(
      { iss: "Upstash", sub: url, exp: now + 300, nbf: now - 5, iat: now, jti: crypto.randomUUID(), body: hash, ...over },
      key,
      "HS256",
    );
  }
  const body = JSON.stringify({ type: "order.paid", orderId: "ord_x" });

  it("accepts a delivery signed with the current or the next key", async () => {
    expect(await verifyWebhook({ signature: await qstashSignature(body, keys.current), body, url }, keys)).toBe(true);
    expect(await verifyWebhook({ signature: await qstashSignature(body, keys.next), body, url }, keys)).toBe(true);
  });

  it("refuses a tampered body, another key, another URL, an expired or a missing signature", async () => {
    const sig = await qstashSignature(body, keys.current);
    expect(await verifyWebhook({ signature: sig, body: body.replace("ord_x", "ord_y"), url }, keys)).toBe(false);
    expect(await verifyWebhook({ signature: await qstashSignature(body, "some-other-key"), body, url }, keys)).toBe(false);
    expect(await verifyWebhook({ signature: sig, body, url: "https://evil.example/" }, keys)).toBe(false);
    expect(
      await verifyWebhook(
        { signature: await qstashSignature(body, keys.current, { exp: Math.floor(Date.now() / 1000) - 60 }), body, url },
        keys,
      ),
    ).toBe(false);
    expect(await verifyWebhook({ signature: null, body, url }, keys)).toBe(false);
  });
});

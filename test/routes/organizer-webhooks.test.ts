import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { OrganizerEventMessage } from "../../lib/organizer-webhooks";
import type { OrderConfirmationMessage } from "../../queues/notifications";
import worker from "../../workers/index";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";
import type { QStashMockInfo } from "../setup/qstash-mock";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_QSTASH: QStashMockInfo;
    }
  }
}

type Published = { destination: string; headers: Record<string, string>; body: string };
const published = async (destination: string): Promise<Published[]> =>
  ((await (await fetch(`${env.TEST_QSTASH.url}/__published`)).json()) as Published[]).filter((p) => p.destination === destination);

/** Checks `Breakwater-Signature` independently of the code under test: HMAC-SHA256(secret, t.body), hex. */
async function signatureValid(header: string, body: string, secret: string): Promise<boolean> {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  const mac = Uint8Array.from((m[2] as string).match(/../g) ?? [], (h) => Number.parseInt(h, 16));
  return crypto.subtle.verify("HMAC", key, mac, new TextEncoder().encode(`${m[1]}.${body}`));
}

async function consume(bodies: unknown[]): Promise<number> {
  const batch = createMessageBatch(
    "breakwater-notifications",
    bodies.map((body, i) => ({ id: `owh-${i}-${crypto.randomUUID()}`, timestamp: new Date(), attempts: 1, body })),
  );
  const ctx = createExecutionContext();
  await worker.queue(batch, env, ctx);
  return (await getQueueResult(batch, ctx)).explicitAcks.length;
}

const put = (token: string, json: unknown) => call("/v1/organizers/me/webhook", { method: "PUT", token, json });

let organizer: string;
let ev: EventBody;
beforeAll(async () => {
  organizer = await tokenFor("org-hooks", "organizer");
  ev = await createEvent(organizer);
});

describe("PUT /v1/organizers/me/webhook", () => {
  it("saves the endpoint and answers its secret once; GET shows it without the secret", async () => {
    const t = await tokenFor("org-hooks-1", "organizer");
    const res = await put(t, { url: "https://hooks.example/one", events: ["order.paid", "event.cancelled"] });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { url: string; events: string[]; secret: string };
    expect(body).toMatchObject({ url: "https://hooks.example/one", events: ["order.paid", "event.cancelled"] });
    expect(body.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    const read = await call("/v1/organizers/me/webhook", { token: t });
    expect(await read.json()).toEqual({ url: "https://hooks.example/one", events: ["order.paid", "event.cancelled"] });

    const again = (await (await put(t, { url: "https://hooks.example/two", events: ["order.refunded"] })).json()) as { secret: string };
    expect(again.secret).not.toBe(body.secret);
  });

  it("refuses bad input with 400 and keeps the endpoint; buyers 403, anonymous 401", async () => {
    const t = await tokenFor("org-hooks-2", "organizer");
    expect((await put(t, { url: "https://hooks.example/kept", events: ["order.paid"] })).status).toBe(200);
    for (const bad of [
      { url: "http://hooks.example/plain", events: ["order.paid"] },
      { url: "https://hooks.example/x", events: [] },
      { url: "https://hooks.example/x", events: ["order.paid", "order.paid"] },
      { url: "https://hooks.example/x", events: ["order.shipped"] },
      { url: "not a url", events: ["order.paid"] },
      { url: "https://hooks.example/x", events: ["order.paid"], extra: 1 },
    ]) {
      const res = await put(t, bad);
      expect(res.status).toBe(400);
      expect(((await res.json()) as Problem).code).toBe("validation_failed");
    }
    expect(await (await call("/v1/organizers/me/webhook", { token: t })).json()).toEqual({
      url: "https://hooks.example/kept",
      events: ["order.paid"],
    });
    expect((await put(await tokenFor("hooks-buyer"), { url: "https://hooks.example/b", events: ["order.paid"] })).status).toBe(403);
    expect(
      (await call("/v1/organizers/me/webhook", { method: "PUT", json: { url: "https://hooks.example/a", events: ["order.paid"] } })).status,
    ).toBe(401);
    expect((await call("/v1/organizers/me/webhook", { token: await tokenFor("org-hooks-none", "organizer") })).status).toBe(404);
  });
});

describe("deliveries to the organizer's endpoint", () => {
  it("signs order.paid and subscribed events with the organizer's secret and skips the others", async () => {
    const url = `https://hooks.example/${crypto.randomUUID()}`;
    const { secret } = (await (await put(organizer, { url, events: ["order.paid", "order.refunded"] })).json()) as { secret: string };
    const orderId = `ord_hook_${crypto.randomUUID().slice(0, 8)}`;
    const confirmation: OrderConfirmationMessage = {
      v: 1,
      kind: "order.confirmation",
      orderId,
      userId: "hook-buyer",
      eventId: ev.id,
      shard: "SHARD_0",
      total: 10_000,
      currency: "EUR",
      tickets: 2,
    };
    const refunded: OrganizerEventMessage = {
      v: 1,
      kind: "organizer.event",
      id: `order.refunded:${orderId}:all`,
      type: "order.refunded",
      eventId: ev.id,
      occurredAt: new Date().toISOString(),
      data: { orderId, amount: 10_000, currency: "EUR" },
    };
    const cancelled: OrganizerEventMessage = {
      ...refunded,
      id: `event.cancelled:${ev.id}`,
      type: "event.cancelled",
      data: { eventId: ev.id },
    };
    expect(await consume([confirmation, refunded, cancelled])).toBe(3);

    const got = await published(url);
    expect(got.map((p) => JSON.parse(p.body).type).sort()).toEqual(["order.paid", "order.refunded"]);
    for (const p of got) {
      const signature = p.headers["upstash-forward-breakwater-signature"] ?? "";
      expect(await signatureValid(signature, p.body, secret)).toBe(true);
      expect(await signatureValid(signature, p.body.replace("10000", "1"), secret)).toBe(false);
      expect(await signatureValid(signature, p.body, "whsec_other")).toBe(false);
      expect(p.headers["upstash-forward-breakwater-event"]).toBe(JSON.parse(p.body).type);
      expect(p.headers["upstash-deduplication-id"]).toBe(`org-hooks:${JSON.parse(p.body).id}`);
    }
    expect(JSON.parse(got.find((p) => p.body.includes("order.paid"))?.body ?? "{}")).toMatchObject({
      id: `order.paid:${orderId}`,
      type: "order.paid",
      eventId: ev.id,
      data: { orderId, total: 10_000, currency: "EUR", tickets: 2 },
    });
  });

  it("retries the message when QStash fails, and dead-letters an invalid organizer event", async () => {
    const url = `https://hooks.example/${crypto.randomUUID()}`;
    await put(organizer, { url, events: ["ticket.checked_in"] });
    const checkedIn: OrganizerEventMessage = {
      v: 1,
      kind: "organizer.event",
      id: `ticket.checked_in:tkt_x`,
      type: "ticket.checked_in",
      eventId: ev.id,
      occurredAt: new Date().toISOString(),
      data: { ticketId: "tkt_x" },
    };
    await fetch(`${env.TEST_QSTASH.url}/__fail?n=1`, { method: "POST" });
    const batch = createMessageBatch("breakwater-notifications", [
      { id: "owh-retry", timestamp: new Date(), attempts: 1, body: checkedIn },
      { id: "owh-bad", timestamp: new Date(), attempts: 1, body: { ...checkedIn, type: "ticket.teleported" } },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.retryMessages.map((m) => m.msgId)).toEqual(["owh-retry"]);
    expect(result.explicitAcks).toEqual(["owh-bad"]);
    expect(await published(url)).toEqual([]);
    expect(await consume([checkedIn])).toBe(1);
    expect(await published(url)).toHaveLength(1);
  });
});

describe("event.sold_out", () => {
  it("is delivered once when the last place sells, end to end through the waiting room and the queue", async () => {
    const org = await tokenFor("org-hooks-soldout", "organizer");
    const small = await createEvent(org, { sections: [{ id: "floor", name: "Floor", kind: "ga", price: 1000, capacity: 2, shards: 1 }] });
    const url = `https://hooks.example/${crypto.randomUUID()}`;
    const { secret } = (await (await put(org, { url, events: ["event.sold_out"] })).json()) as { secret: string };
    const buyer = await tokenFor("soldout-buyer");
    const hold = await call(`/v1/events/${small.id}/holds`, { method: "POST", token: buyer, json: { sectionId: "floor", quantity: 2 } });
    const holdId = ((await hold.json()) as { hold: { id: string } }).hold.id;
    const paid = await call("/v1/orders", {
      method: "POST",
      token: buyer,
      json: { holdId, payment: { method: "sandbox", token: "tok_ok" } },
    });
    expect(paid.status).toBe(201);

    let got: Published[] = [];
    for (let i = 0; i < 60 && !got.length; i++) {
      await new Promise((r) => setTimeout(r, 250));
      got = await published(url);
    }
    expect(got).toHaveLength(1);
    const delivered = JSON.parse(got[0]?.body ?? "{}");
    expect(delivered).toMatchObject({ id: `event.sold_out:${small.id}:1`, type: "event.sold_out", eventId: small.id });
    expect(await signatureValid(got[0]?.headers["upstash-forward-breakwater-signature"] ?? "", got[0]?.body ?? "", secret)).toBe(true);
    // Later reports of the same sold-out state announce nothing more.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await published(url)).toHaveLength(1);
  });
});

import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { InventoryNamespace } from "../../lib/holds";
import type { RefundRequestMessage } from "../../lib/order";
import { resetSandbox, sandboxLedger } from "../../lib/payments";
import { consumeRefunds } from "../../queues/refunds";
import worker from "../../workers/index";
import { call, createEvent, tokenFor } from "../helpers";
import { eventually, recordingBatch } from "./helpers";

/** An Inventory namespace whose objects are all unreachable (every call fails like an overloaded DO). */
const unreachable = {
  idFromName: (name: string) => env.INVENTORY.idFromName(name),
  get: () =>
    new Proxy(
      {},
      {
        get: () => async () => {
          throw new Error("Durable Object is overloaded");
        },
      },
    ),
} as unknown as InventoryNamespace;

describe("refunds queue", () => {
  it("retries a refund that keeps failing with growing backoff, dead-letters it, and a replay after the fix refunds it once", async () => {
    resetSandbox();
    const organizer = await tokenFor("org-refund-dlq", "organizer");
    const ev = await createEvent(organizer);
    const buyer = await tokenFor("refund-dlq-buyer");
    const h = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token: buyer, json: { sectionId: "floor", quantity: 1 } });
    const holdId = ((await h.json()) as { hold: { id: string } }).hold.id;
    const paid = await call("/v1/orders", {
      method: "POST",
      token: buyer,
      json: { holdId, payment: { method: "sandbox", token: "tok_ok" } },
    });
    const order = ((await paid.json()) as { order: { id: string; total: number } }).order;
    const msg: RefundRequestMessage = { v: 1, kind: "order.refund", orderId: order.id, eventId: ev.id, cause: "event.cancelled" };

    // max_retries = 8 (wrangler.toml): 9 deliveries, each retried after at least half of a doubling ceiling.
    for (let attempt = 1; attempt <= 9; attempt++) {
      const { batch, outcomes } = recordingBatch("breakwater-refunds", [msg], attempt);
      await consumeRefunds(batch, { inventory: unreachable, deadLetter: async () => {} });
      expect(outcomes[0]?.acked).toBe(false);
      const ceiling = Math.min(600, 5 * 2 ** (attempt - 1));
      expect(outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(ceiling / 2);
      expect(outcomes[0]?.retry?.delaySeconds).toBeLessThanOrEqual(ceiling);
    }
    expect(sandboxLedger().find((c) => c.idempotencyKey.startsWith(`${order.id}:`))?.refunds ?? []).toEqual([]);

    // Queues moves it to the DLQ, whose consumer records it for the admin routes.
    const dlq = createMessageBatch("breakwater-refunds-dlq", [
      { id: `m-${crypto.randomUUID()}`, timestamp: new Date(), attempts: 1, body: msg },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(dlq, env, ctx);
    expect((await getQueueResult(dlq, ctx)).explicitAcks).toHaveLength(1);
    const admin = await tokenFor("refund-dlq-admin", "admin");
    const list = await call("/v1/admin/dead-letters?queue=breakwater-refunds&status=dead", { token: admin });
    expect(list.status).toBe(200);
    const { deadLetters } = (await list.json()) as { deadLetters: { id: string; body: { orderId?: string }; lastError: string }[] };
    const dl = deadLetters.find((d) => d.body.orderId === order.id);
    expect(dl?.lastError).toContain("exhausted retries");

    // Fixed: the replay goes through the real refunds queue and refunds the order once.
    const replay = await call("/v1/admin/dead-letters/replay", { method: "POST", token: admin, json: { ids: [dl?.id] } });
    expect(((await replay.json()) as { replayed: string[] }).replayed).toEqual([dl?.id]);
    const charge = () => sandboxLedger().find((c) => c.idempotencyKey.startsWith(`${order.id}:`));
    await eventually(async () => charge()?.status === "refunded");
    expect(charge()?.refunds?.map((r) => r.amount)).toEqual([order.total]);
    // The same message once more (at least once delivery) refunds nothing more.
    await env.REFUNDS_QUEUE.send(msg, { contentType: "json" });
    await eventually(async () => {
      const read = (await (await call(`/v1/orders/${order.id}`, { token: buyer })).json()) as { order: { status: string } };
      return read.order.status === "refunded";
    });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(charge()?.refunds).toHaveLength(1);
  });

  it("dead-letters an invalid message at once", async () => {
    const recorded: string[] = [];
    const { batch, outcomes } = recordingBatch("breakwater-refunds", [{ v: 1, kind: "order.refund", orderId: "" }]);
    await consumeRefunds(batch, {
      inventory: unreachable,
      deadLetter: async (_q, _m, error) => {
        recorded.push(error);
      },
    });
    expect(outcomes[0]?.acked).toBe(true);
    expect(recorded[0]).toContain("invalid message");
  });
});

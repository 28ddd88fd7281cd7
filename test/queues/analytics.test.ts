import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type AnalyticsEventInput, sendAnalytics } from "../../lib/analytics-event";
import { consumeAnalytics } from "../../queues/analytics";
import worker from "../../workers/index";
import { freshTag, recordingBatch, recordingQueue } from "./helpers";

const at = (s: number) => new Date(Date.UTC(2026, 10, 24, 10, 0, s)).toISOString();
const rowsOf = async (eventId: string) =>
  (
    await env.CATALOG_DB.prepare("SELECT id, kind, user_id, quantity, amount FROM analytics_events WHERE event_id = ? ORDER BY id")
      .bind(eventId)
      .all<{ id: string; kind: string; user_id: string | null; quantity: number; amount: number }>()
  ).results;

describe("analytics consumer", () => {
  it("appends raw events once, whatever the redeliveries; an event without an id gets one from its fields", async () => {
    const eventId = `evt_an_${freshTag()}`;
    const events: AnalyticsEventInput[] = [
      { id: "hold.created:h1", kind: "hold.created", eventId, at: at(1), userId: "u1", quantity: 2 },
      { id: "order.paid:o1", kind: "order.paid", eventId, at: at(2), userId: "u1", quantity: 2, amount: 9000 },
      { kind: "queue.joined", eventId, at: at(3), userId: "u2" },
      { kind: "queue.joined", eventId, at: at(3), userId: "u2" }, // the same event produced twice
    ];
    for (let round = 0; round < 2; round++) {
      const batch = createMessageBatch(
        "breakwater-analytics",
        events.map((body, i) => ({ id: `an-${eventId}-${round}-${i}`, timestamp: new Date(), attempts: 1, body })),
      );
      const ctx = createExecutionContext();
      await worker.queue(batch, env, ctx);
      const result = await getQueueResult(batch, ctx);
      expect(result.explicitAcks).toHaveLength(events.length);
      expect(result.retryMessages).toEqual([]);
    }
    expect(await rowsOf(eventId)).toEqual([
      { id: "hold.created:h1", kind: "hold.created", user_id: "u1", quantity: 2, amount: 0 },
      { id: "order.paid:o1", kind: "order.paid", user_id: "u1", quantity: 2, amount: 9000 },
      { id: `queue.joined:${eventId}:u2:${at(3)}`, kind: "queue.joined", user_id: "u2", quantity: 0, amount: 0 },
    ]);
  });

  it("writes a full batch (more rows than one statement binds) in one transaction", async () => {
    const eventId = `evt_an_${freshTag()}`;
    const events = Array.from({ length: 100 }, (_, i) => ({
      id: `hold.created:${eventId}:${i}`,
      kind: "hold.created",
      eventId,
      at: at(i % 60),
    }));
    const { batch, outcomes } = recordingBatch("breakwater-analytics", events);
    await consumeAnalytics(batch, { catalog: env.CATALOG_DB, deadLetter: async () => {} });
    expect(outcomes.every((o) => o.acked)).toBe(true);
    expect(await rowsOf(eventId)).toHaveLength(100);
  });

  it("dead-letters invalid events at once and still stores the valid ones", async () => {
    const eventId = `evt_an_${freshTag()}`;
    const dead: { queue: string; error: string }[] = [];
    const { batch, outcomes } = recordingBatch("breakwater-analytics", [
      { kind: "hold.created", eventId, at: at(1), userId: "u" },
      { kind: "party.started", eventId, at: at(1) },
      { kind: "hold.created", eventId, at: "yesterday" },
      { kind: "order.paid", eventId, at: at(2), amount: -5 },
    ]);
    await consumeAnalytics(batch, {
      catalog: env.CATALOG_DB,
      deadLetter: async (queue, _msg, error) => void dead.push({ queue, error }),
    });
    expect(outcomes.every((o) => o.acked && !o.retry)).toBe(true);
    expect(dead.map((d) => d.queue)).toEqual(["breakwater-analytics", "breakwater-analytics", "breakwater-analytics"]);
    expect(dead.map((d) => /^invalid message: (\w+) /.exec(d.error)?.[1])).toEqual(["kind", "at", "amount"]);
    expect(await rowsOf(eventId)).toHaveLength(1);
  });

  it("retries every valid event with backoff when the catalog write fails", async () => {
    const eventId = `evt_an_${freshTag()}`;
    const fail = async () => {
      throw new Error("D1_ERROR: catalog overloaded");
    };
    // Every write fails, however it is made (one statement or a batch).
    const failing = { prepare: () => ({ bind: () => ({ run: fail, all: fail, first: fail }) }), batch: fail } as unknown as D1Database;
    const { batch, outcomes } = recordingBatch(
      "breakwater-analytics",
      [1, 2, 3].map((i) => ({ kind: "hold.expired", eventId, at: at(i) })),
      4,
    );
    await consumeAnalytics(batch, { catalog: failing, deadLetter: async () => {} });
    for (const o of outcomes) {
      expect(o.acked).toBe(false);
      expect(o.retry?.delaySeconds).toBeGreaterThanOrEqual(1);
      expect(o.retry?.delaySeconds).toBeLessThanOrEqual(16);
    }
    expect(await rowsOf(eventId)).toEqual([]);
  });
});

describe("sendAnalytics", () => {
  it("sends one event or many, validated, in batches of at most 100", async () => {
    const q = recordingQueue();
    await sendAnalytics(q, { kind: "queue.admitted", eventId: "evt_1", at: at(1), userId: "u" });
    expect(q.bodies).toEqual([
      { id: `queue.admitted:evt_1:u:${at(1)}`, kind: "queue.admitted", eventId: "evt_1", at: at(1), userId: "u", quantity: 0, amount: 0 },
    ]);
    const many = Array.from({ length: 250 }, (_, i) => ({ id: `e${i}`, kind: "hold.created" as const, eventId: "evt_1", at: at(1) }));
    await sendAnalytics(q, many);
    expect(q.calls).toBe(1 + 3);
    expect(q.bodies).toHaveLength(251);
  });

  it("throws on an invalid event and sends none of the batch", async () => {
    const q = recordingQueue();
    await expect(
      sendAnalytics(q, [
        { kind: "hold.created", eventId: "evt_1", at: at(1) },
        { kind: "hold.created", eventId: "", at: at(1) },
      ]),
    ).rejects.toThrow();
    expect(q.calls).toBe(0);
  });
});

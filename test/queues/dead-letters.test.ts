import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { consumeDeadLetters, listDeadLetters, originalQueue, recordDeadLetter, replayDeadLetters } from "../../queues/dead-letters";
import worker from "../../workers/index";
import { freshTag, recordingBatch, recordingQueue } from "./helpers";

const row = (id: string) =>
  env.CATALOG_DB.prepare("SELECT queue, status, attempts, body, last_error FROM dead_letters WHERE id = ?")
    .bind(id)
    .first<{ queue: string; status: string; attempts: number; body: string; last_error: string }>();

describe("dead-letter queues", () => {
  it("the DLQ consumers record each message under its original queue, once per message id", async () => {
    const tag = freshTag();
    for (const q of ["orders", "notifications", "analytics"]) {
      const messages = [{ id: `dl-${tag}-${q}`, timestamp: new Date(), attempts: 9, body: { hello: q } }];
      for (const _redelivery of [1, 2]) {
        const batch = createMessageBatch(`breakwater-${q}-dlq`, messages);
        const ctx = createExecutionContext();
        await worker.queue(batch, env, ctx);
        expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual([`dl-${tag}-${q}`]);
      }
      expect(await row(`breakwater-${q}:dl-${tag}-${q}`)).toMatchObject({
        queue: `breakwater-${q}`,
        status: "dead",
        attempts: 9,
        body: JSON.stringify({ hello: q }),
      });
    }
    const n = await env.CATALOG_DB.prepare("SELECT count(*) AS n FROM dead_letters WHERE id LIKE ?").bind(`%dl-${tag}-%`).first("n");
    expect(n).toBe(3);
  });

  it("retries a dead letter with backoff when it cannot be recorded", async () => {
    const failing = {
      prepare: () => {
        throw new Error("D1_ERROR: catalog unavailable");
      },
    } as unknown as D1Database;
    const { batch, outcomes } = recordingBatch("breakwater-orders-dlq", [{ x: 1 }], 2);
    await consumeDeadLetters(batch, { catalog: failing, lastResort: env.CATALOG_KV });
    expect(outcomes[0]?.acked).toBe(false);
    expect(outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(1);
    expect(outcomes[0]?.retry?.delaySeconds).toBeLessThanOrEqual(4);
  });

  it("a batch from a queue nobody consumes is kept for later, not acknowledged", async () => {
    const batch = createMessageBatch("breakwater-unknown", [{ id: "u-1", timestamp: new Date(), attempts: 1, body: {} }]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryBatch.retry).toBe(true);
  });

  it("replays dead letters to their original queue in batches and marks them replayed; the rest stay dead", async () => {
    const tag = freshTag();
    for (let i = 0; i < 130; i++)
      await recordDeadLetter(env.CATALOG_DB, "breakwater-analytics-dlq", { id: `${tag}-${i}`, body: { n: i }, attempts: 6 }, "boom");
    await recordDeadLetter(env.CATALOG_DB, "breakwater-notifications", { id: `${tag}-note`, body: { n: "note" }, attempts: 1 }, "bad");
    const analytics = recordingQueue();
    const notifications = recordingQueue();
    const replayed = await replayDeadLetters(
      {
        CATALOG_DB: env.CATALOG_DB,
        ORDERS_QUEUE: recordingQueue(),
        NOTIFICATIONS_QUEUE: notifications,
        ANALYTICS_QUEUE: analytics,
        REFUNDS_QUEUE: recordingQueue(),
      },
      { queue: "breakwater-analytics" },
    );
    const mine = replayed.filter((id) => id.startsWith(`breakwater-analytics:${tag}-`));
    expect(mine).toHaveLength(130);
    expect(analytics.calls).toBeGreaterThanOrEqual(2); // at most 100 per sendBatch
    expect(analytics.bodies).toEqual(expect.arrayContaining([{ n: 0 }, { n: 129 }]));
    expect(notifications.bodies).toEqual([]);
    expect(await row(`breakwater-analytics:${tag}-7`)).toMatchObject({ status: "replayed" });
    expect(await row(`breakwater-notifications:${tag}-note`)).toMatchObject({ status: "dead" });
    const listed = await listDeadLetters(env.CATALOG_DB, { queue: "breakwater-analytics", status: "replayed", limit: 500 });
    expect(listed.find((d) => d.id === `breakwater-analytics:${tag}-7`)?.replayedAt).toEqual(expect.any(String));
  });

  it("replays by ids (more than one statement binds), in send batches under the Queues size limit", async () => {
    const tag = freshTag();
    const big = "x".repeat(60_000);
    for (let i = 0; i < 150; i++)
      await recordDeadLetter(
        env.CATALOG_DB,
        "breakwater-orders",
        { id: `${tag}-${i}`, body: { n: i, pad: i < 6 ? big : "" }, attempts: 9 },
        "e",
      );
    const orders = recordingQueue();
    const sizes: number[] = [];
    const sendBatch = orders.sendBatch.bind(orders);
    orders.sendBatch = async (messages) => {
      const list = [...messages];
      sizes.push(list.reduce((a, m) => a + JSON.stringify(m.body).length, 0));
      expect(list.length).toBeLessThanOrEqual(100);
      return sendBatch(list);
    };
    const ids = Array.from({ length: 150 }, (_, i) => `breakwater-orders:${tag}-${i}`);
    const replayed = await replayDeadLetters(
      {
        CATALOG_DB: env.CATALOG_DB,
        ORDERS_QUEUE: orders,
        NOTIFICATIONS_QUEUE: recordingQueue(),
        ANALYTICS_QUEUE: recordingQueue(),
        REFUNDS_QUEUE: recordingQueue(),
      },
      { ids },
    );
    expect(replayed.sort()).toEqual([...ids].sort());
    expect(orders.bodies).toHaveLength(150);
    for (const size of sizes) expect(size).toBeLessThan(256_000);
    expect(sizes.length).toBeGreaterThanOrEqual(3);
  });

  it("a replay that fails to send leaves the dead letters dead for the next attempt", async () => {
    const tag = freshTag();
    await recordDeadLetter(env.CATALOG_DB, "breakwater-orders", { id: `${tag}-o`, body: { n: 1 }, attempts: 9 }, "boom");
    const down = recordingQueue({ fail: () => true });
    await expect(
      replayDeadLetters(
        {
          CATALOG_DB: env.CATALOG_DB,
          ORDERS_QUEUE: down,
          NOTIFICATIONS_QUEUE: recordingQueue(),
          ANALYTICS_QUEUE: recordingQueue(),
          REFUNDS_QUEUE: recordingQueue(),
        },
        { ids: [`breakwater-orders:${tag}-o`] },
      ),
    ).rejects.toThrow("queue unavailable");
    expect(await row(`breakwater-orders:${tag}-o`)).toMatchObject({ status: "dead" });
  });

  it("maps a DLQ name to its original queue", () => {
    expect(originalQueue("breakwater-orders-dlq")).toBe("breakwater-orders");
    expect(originalQueue("breakwater-orders")).toBe("breakwater-orders");
  });
});

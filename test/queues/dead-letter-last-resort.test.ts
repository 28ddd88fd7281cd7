import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { minimumRetrySpan, ORDERS_QUEUE_RETRY, queueRetryDelaySeconds } from "../../lib/backoff";
import { metrics } from "../../lib/metrics";
import { retryLater, retryPolicyFor } from "../../queues/consume";
import {
  consumeDeadLetters,
  DLQ_MAX_RETRIES,
  LAST_RESORT_FROM_ATTEMPT,
  LAST_RESORT_PREFIX,
  rescueParkedDeadLetters,
} from "../../queues/dead-letters";
import { recordingBatch } from "./helpers";

const failingD1 = {
  prepare: () => {
    throw new Error("D1_ERROR: catalog unavailable");
  },
} as unknown as D1Database;
const refusingKv = { put: async () => Promise.reject(new Error("KV PUT failed: 503")) };
const lastResort = () => metrics.value("breakwater_dead_letters_last_resort_total", { queue: "breakwater-orders" });
const lost = () => metrics.value("breakwater_dead_letters_lost_total", { queue: "breakwater-orders" });

describe("order retries", () => {
  it("wait at least half of each ceiling: 8 retries span at least 10 minutes, not ~8 s", () => {
    expect(minimumRetrySpan(ORDERS_QUEUE_RETRY, 8)).toBeGreaterThanOrEqual(600);
    let total = 0;
    for (let a = 1; a <= 8; a++) total += queueRetryDelaySeconds(a, { policy: ORDERS_QUEUE_RETRY, random: () => 0 });
    expect(total).toBeGreaterThanOrEqual(600);
    expect(retryPolicyFor("breakwater-orders")).toBe(ORDERS_QUEUE_RETRY);
  });

  it("are what the orders consumer asks the queue for", () => {
    const { batch, outcomes } = recordingBatch("breakwater-orders", [{ x: 1 }], 1);
    retryLater("breakwater-orders", batch.messages[0] as Message, {}, new Error("shard down"));
    expect(outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(3);
    const later = recordingBatch("breakwater-orders", [{ x: 1 }], 6);
    retryLater("breakwater-orders", later.batch.messages[0] as Message, {}, new Error("shard down"));
    expect(later.outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(80);
  });
});

describe("the dead-letter last resort", () => {
  it("parks a dead letter in KV when D1 cannot take it on a late attempt, counts it, and the cron moves it into D1", async () => {
    const before = lastResort();
    const body = { orderId: `ord-${crypto.randomUUID()}` };
    const { batch, outcomes } = recordingBatch("breakwater-orders-dlq", [body], LAST_RESORT_FROM_ATTEMPT);
    await consumeDeadLetters(batch, { catalog: failingD1, lastResort: env.CATALOG_KV });
    expect(outcomes[0]).toMatchObject({ acked: true });
    expect(lastResort()).toBe(before + 1);
    const id = (batch.messages[0] as Message).id;
    const key = `${LAST_RESORT_PREFIX}breakwater-orders:${id}`;
    expect(await env.CATALOG_KV.get<{ body: unknown }>(key, "json")).toMatchObject({ body, queue: "breakwater-orders" });

    expect(await rescueParkedDeadLetters(env)).toBeGreaterThanOrEqual(1);
    expect(await env.CATALOG_KV.get(key)).toBeNull();
    const row = await env.CATALOG_DB.prepare("SELECT queue, status, body FROM dead_letters WHERE id = ?")
      .bind(`breakwater-orders:${id}`)
      .first<{ queue: string; status: string; body: string }>();
    expect(row).toEqual({ queue: "breakwater-orders", status: "dead", body: JSON.stringify(body) });
  });

  it("keeps retrying early attempts rather than parking them", async () => {
    const before = lastResort();
    const { batch, outcomes } = recordingBatch("breakwater-orders-dlq", [{ x: 1 }], 2);
    await consumeDeadLetters(batch, { catalog: failingD1, lastResort: env.CATALOG_KV });
    expect(outcomes[0]?.acked).toBe(false);
    expect(outcomes[0]?.retry?.delaySeconds).toBeGreaterThanOrEqual(1);
    expect(lastResort()).toBe(before);
  });

  it("counts a dead letter neither D1 nor KV took on its last attempt as lost (never silently)", async () => {
    const before = lost();
    const early = recordingBatch("breakwater-orders-dlq", [{ x: 2 }], LAST_RESORT_FROM_ATTEMPT);
    await consumeDeadLetters(early.batch, { catalog: failingD1, lastResort: refusingKv });
    expect(early.outcomes[0]?.acked).toBe(false);
    expect(lost()).toBe(before);
    const last = recordingBatch("breakwater-orders-dlq", [{ x: 3 }], DLQ_MAX_RETRIES);
    await consumeDeadLetters(last.batch, { catalog: failingD1, lastResort: refusingKv });
    expect(last.outcomes[0]?.acked).toBe(false);
    expect(lost()).toBe(before + 1);
  });
});

import { createExecutionContext, createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { catalogCache } from "../../lib/catalog";
import { metrics } from "../../lib/metrics";
import worker from "../../workers/index";
import { call, type EventBody, eventInput, type Problem, tokenFor } from "../helpers";

let organizer: string;
beforeAll(async () => {
  organizer = await tokenFor("org-publish", "organizer");
});
afterEach(() => {
  vi.restoreAllMocks();
});

const countEvents = async () => (await env.CATALOG_DB.prepare("SELECT count(*) AS n FROM events").first<{ n: number }>())?.n ?? -1;
const publishFailures = () => metrics.sum("breakwater_catalog_publish_failures_total", {});
/** KV refusing writes, as it does past one write per second per key. */
const refuseKvWrites = () => vi.spyOn(env.CATALOG_KV, "put").mockRejectedValue(new Error("KV PUT failed: 429 Too Many Requests"));
const kvDoc = (id: string) => env.CATALOG_KV.get<{ event: EventBody }>(`event:${id}`, "json");

async function runCron(): Promise<void> {
  const ctx = createExecutionContext();
  await worker.scheduled?.(createScheduledController({ scheduledTime: Date.now(), cron: "* * * * *" }), env, ctx);
}

describe("publishing the catalog to KV after a change", () => {
  it("answers 201 for an event saved in D1 when KV refuses the write, and the cron publishes it", async () => {
    const failures = publishFailures();
    const put = refuseKvWrites();
    const res = await call("/v1/events", { method: "POST", token: organizer, json: eventInput({ name: "KV refused" }) });
    expect(res.status).toBe(201);
    const { event } = (await res.json()) as { event: EventBody };
    expect(put).toHaveBeenCalled();
    put.mockRestore();
    expect(publishFailures()).toBeGreaterThan(failures);
    expect(await env.CATALOG_DB.prepare("SELECT name FROM events WHERE id = ?").bind(event.id).first()).toEqual({ name: "KV refused" });
    expect(await kvDoc(event.id)).toBeNull();
    // Readers find it meanwhile (KV miss → D1).
    catalogCache.clear();
    expect((await call(`/v1/events/${event.id}`)).status).toBe(200);

    await env.CATALOG_KV.delete(`event:${event.id}`);
    await runCron();
    expect(await kvDoc(event.id)).toEqual({ event });
    const list = await env.CATALOG_KV.get<{ events: { id: string }[] }>("events:list", "json");
    expect(list?.events.map((e) => e.id)).toContain(event.id);
  });

  it("answers 200 for a saved rename when KV refuses the write; the cron replaces the stale document", async () => {
    const created = await call("/v1/events", { method: "POST", token: organizer, json: eventInput({ name: "Before" }) });
    const { event } = (await created.json()) as { event: EventBody };
    expect((await kvDoc(event.id))?.event.version).toBe(1);
    const put = refuseKvWrites();
    const res = await call(`/v1/events/${event.id}`, { method: "PATCH", token: organizer, json: { name: "After" } });
    expect(res.status).toBe(200);
    put.mockRestore();
    expect((await kvDoc(event.id))?.event).toMatchObject({ name: "Before", version: 1 });
    await runCron();
    expect((await kvDoc(event.id))?.event).toMatchObject({ name: "After", version: 2 });
  });
});

describe("Idempotency-Key on POST /v1/events", () => {
  it("creates one event for a retried request, replays it with its Location, and refuses another body under the key", async () => {
    const before = await countEvents();
    const bodies = { Once: eventInput({ name: "Once" }), Twice: eventInput({ name: "Twice" }) };
    const create = (name: keyof typeof bodies) =>
      call("/v1/events", { method: "POST", token: organizer, json: bodies[name], headers: { "Idempotency-Key": "create-1" } });
    const first = await create("Once");
    expect(first.status).toBe(201);
    const body = await first.text();
    const id = (JSON.parse(body) as { event: EventBody }).event.id;
    const retry = await create("Once");
    expect(retry.status).toBe(201);
    expect(retry.headers.get("Idempotency-Replayed")).toBe("true");
    expect(retry.headers.get("Location")).toBe(`/v1/events/${id}`);
    expect(await retry.text()).toBe(body);
    const other = await create("Twice");
    expect(other.status).toBe(422);
    expect(((await other.json()) as Problem).code).toBe("idempotency_mismatch");
    expect(await countEvents()).toBe(before + 1);
  });

  it("keeps keys per organizer", async () => {
    const other = await tokenFor("org-publish-2", "organizer");
    const before = await countEvents();
    for (const token of [organizer, other]) {
      const res = await call("/v1/events", { method: "POST", token, json: eventInput(), headers: { "Idempotency-Key": "shared-key" } });
      expect(res.status).toBe(201);
      expect(res.headers.get("Idempotency-Replayed")).toBeNull();
    }
    expect(await countEvents()).toBe(before + 2);
  });
});

import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { recordDeadLetter } from "../../queues/dead-letters";
import { call, tokenFor } from "../helpers";
import { eventually, freshTag, orderMsg, ordersQueueSettled, totalRows } from "../queues/helpers";

interface DeadLetterBody {
  id: string;
  queue: string;
  body: unknown;
  attempts: number;
  firstFailedAt: string;
  lastError: string | null;
  status: "dead" | "replayed";
  replayedAt: string | null;
}
const list = async (token: string, query = "") => {
  const res = await call(`/v1/admin/dead-letters${query}`, { token });
  expect(res.status).toBe(200);
  return ((await res.json()) as { deadLetters: DeadLetterBody[] }).deadLetters;
};
const replay = (token: string, json: unknown) => call("/v1/admin/dead-letters/replay", { method: "POST", token, json });

let admin: string;
let buyer: string;
beforeAll(async () => {
  admin = await tokenFor("admin-1", "admin");
  buyer = await tokenFor("buyer-1", "buyer");
});

describe("GET /v1/admin/dead-letters", () => {
  it("lists dead letters newest first, filtered by queue, status and limit", async () => {
    const tag = freshTag();
    await recordDeadLetter(env.CATALOG_DB, "breakwater-analytics-dlq", { id: `${tag}-a`, body: { a: 1 }, attempts: 6 }, "exhausted");
    await new Promise((r) => setTimeout(r, 5));
    await recordDeadLetter(
      env.CATALOG_DB,
      "breakwater-notifications",
      { id: `${tag}-n`, body: { n: 1 }, attempts: 1 },
      "invalid message: x",
    );
    const all = await list(admin, "?limit=500");
    const mine = all.filter((d) => d.id.includes(tag));
    expect(mine.map((d) => d.id)).toEqual([`breakwater-notifications:${tag}-n`, `breakwater-analytics:${tag}-a`]);
    expect(mine[1]).toEqual({
      id: `breakwater-analytics:${tag}-a`,
      queue: "breakwater-analytics",
      body: { a: 1 },
      attempts: 6,
      firstFailedAt: expect.any(String),
      lastError: "exhausted",
      status: "dead",
      replayedAt: null,
    });
    const analytics = await list(admin, "?queue=breakwater-analytics&status=dead&limit=500");
    expect(analytics.every((d) => d.queue === "breakwater-analytics" && d.status === "dead")).toBe(true);
    expect(analytics.some((d) => d.id === `breakwater-analytics:${tag}-a`)).toBe(true);
    expect(await list(admin, "?limit=1")).toHaveLength(1);
    expect((await list(admin, "?status=replayed&limit=500")).some((d) => d.id.includes(tag))).toBe(false);
  });

  it("is for admins only and validates its query", async () => {
    expect((await call("/v1/admin/dead-letters")).status).toBe(401);
    const forbidden = await call("/v1/admin/dead-letters", { token: buyer });
    expect(forbidden.status).toBe(403);
    expect(await forbidden.json()).toMatchObject({ code: "forbidden" });
    expect((await call("/v1/admin/dead-letters", { token: await tokenFor("org-1", "organizer") })).status).toBe(403);
    for (const q of ["?queue=breakwater-nope", "?status=lost", "?limit=0", "?limit=501", "?extra=1"]) {
      const res = await call(`/v1/admin/dead-letters${q}`, { token: admin });
      expect(res.status, q).toBe(400);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(await res.json()).toMatchObject({ code: "validation_failed" });
    }
  });
});

describe("POST /v1/admin/dead-letters/replay", () => {
  it("replays all of a queue's dead letters through the real queue, stores each order once, and marks them replayed", async () => {
    const tag = freshTag();
    const orders = [1, 2, 3].map((n) => orderMsg(`${tag}-replay-${n}`, n, {}, tag));
    for (const [i, o] of orders.entries())
      await recordDeadLetter(env.CATALOG_DB, "breakwater-orders-dlq", { id: `${tag}-${i}`, body: o, attempts: 9 }, "x");
    await recordDeadLetter(env.CATALOG_DB, "breakwater-analytics-dlq", { id: `${tag}-other`, body: { bad: true }, attempts: 6 }, "x");

    const res = await replay(admin, { queue: "breakwater-orders" });
    expect(res.status).toBe(200);
    const { replayed } = (await res.json()) as { replayed: string[] };
    expect(replayed).toEqual(expect.arrayContaining(orders.map((_, i) => `breakwater-orders:${tag}-${i}`)));
    expect(replayed).not.toContain(`breakwater-analytics:${tag}-other`);
    for (const o of orders) await eventually(async () => (await totalRows(o.orderId)) === 1);

    const after = (await list(admin, "?queue=breakwater-orders&limit=500")).filter((d) => d.id.includes(tag));
    expect(after.map((d) => d.status)).toEqual(["replayed", "replayed", "replayed"]);
    for (const d of after) expect(Date.parse(d.replayedAt ?? "")).toBeGreaterThan(0);
    expect(
      (await list(admin, "?queue=breakwater-analytics&status=dead&limit=500")).some((d) => d.id === `breakwater-analytics:${tag}-other`),
    ).toBe(true);
    // Replaying again sends nothing: they are no longer dead.
    const again = await replay(admin, { ids: after.map((d) => d.id) });
    expect(await again.json()).toEqual({ replayed: [] });
    await ordersQueueSettled();
    for (const o of orders) expect(await totalRows(o.orderId)).toBe(1);
  });

  it("is for admins only and needs ids or a queue", async () => {
    expect((await replay("", { queue: "breakwater-orders" })).status).toBe(401);
    expect((await replay(buyer, { queue: "breakwater-orders" })).status).toBe(403);
    for (const body of [{}, { ids: [] }, { queue: "breakwater-orders-dlq" }, { ids: ["x"], extra: 1 }, { ids: "x" }]) {
      const res = await replay(admin, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(await res.json()).toMatchObject({ code: "validation_failed" });
    }
    expect(await (await replay(admin, { ids: ["breakwater-orders:nothing-here"] })).json()).toEqual({ replayed: [] });
  });

  it("both routes are in the OpenAPI document, for admins", async () => {
    const doc = (await (await call("/openapi.json")).json()) as { paths: Record<string, Record<string, { security?: unknown }>> };
    expect(doc.paths["/v1/admin/dead-letters"]?.get).toBeDefined();
    expect(doc.paths["/v1/admin/dead-letters/replay"]?.post).toBeDefined();
  });
});

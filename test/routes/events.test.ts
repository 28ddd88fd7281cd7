import { env } from "cloudflare:workers";
import { sign } from "hono/utils/jwt/jwt";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { catalogCache, catalogDb, publishEvent } from "../../lib/catalog";
import type { EventDoc } from "../../lib/event-schema";
import { metrics } from "../../lib/metrics";
import { call, createEvent, eventInput, type Problem, tokenFor } from "../helpers";

let organizer: string;
let otherOrganizer: string;
let buyer: string;
let admin: string;

beforeAll(async () => {
  [organizer, otherOrganizer, buyer, admin] = await Promise.all([
    tokenFor("org-1", "organizer"),
    tokenFor("org-2", "organizer"),
    tokenFor("buyer-1", "buyer"),
    tokenFor("admin-1", "admin"),
  ]);
});

const countEvents = async () => (await env.CATALOG_DB.prepare("SELECT count(*) AS n FROM events").first<{ n: number }>())?.n ?? -1;

describe("POST /v1/events (happy)", () => {
  it("creates an event, stores it in D1 and publishes it to KV", async () => {
    const ev = await createEvent(organizer);
    expect(ev.id).toMatch(/^evt_/);
    expect(ev.sections.map((s) => [s.id, s.capacity])).toEqual([
      ["floor", 100],
      ["a", 10],
    ]);
    expect(ev).toMatchObject({ holdSeconds: 600, waitingRoom: { enabled: false, admitPerMinute: 6000 }, minPrice: 5000, capacity: 110 });
    const row = await env.CATALOG_DB.prepare("SELECT organizer_id, name FROM events WHERE id = ?").bind(ev.id).first();
    expect(row).toEqual({ organizer_id: "org-1", name: "Night Drive" });
    const kvDoc = await env.CATALOG_KV.get(`event:${ev.id}`, "json");
    expect(kvDoc).toEqual({ event: ev });
    const list = await env.CATALOG_KV.get<{ events: { id: string }[] }>("events:list", "json");
    expect(list?.events.map((e) => e.id)).toContain(ev.id);
  });

  it("defaults GA shards to fit the capacity", async () => {
    const ev = await createEvent(organizer, {
      sections: [{ id: "ga", name: "GA", kind: "ga", price: 100, capacity: 12_000 }],
    });
    expect(ev.sections[0]?.shards).toBe(5);
  });
});

describe("GET /v1/events/:id through the cache stack", () => {
  it("serves from D1 once, then from caches, with ETag and 304", async () => {
    const ev = await createEvent(organizer);
    catalogCache.clear();
    await env.CATALOG_KV.delete(`event:${ev.id}`); // force the first read to reach D1
    const d1Before = metrics.sum("breakwater_d1_queries_total", { db: "catalog" });
    const first = await call(`/v1/events/${ev.id}`);
    expect(first.status).toBe(200);
    const etag = first.headers.get("ETag");
    expect(etag).toMatch(/^"[0-9a-f]{16}"$/);
    expect(first.headers.get("Cache-Control")).toContain("s-maxage=5");
    expect(await first.json()).toEqual({ event: ev });
    const afterFirst = metrics.sum("breakwater_d1_queries_total", { db: "catalog" });
    expect(afterFirst - d1Before).toBe(1);

    const reads = await Promise.all(Array.from({ length: 50 }, () => call(`/v1/events/${ev.id}`)));
    expect(reads.every((r) => r.status === 200)).toBe(true);
    expect(metrics.sum("breakwater_d1_queries_total", { db: "catalog" })).toBe(afterFirst);

    const notModified = await call(`/v1/events/${ev.id}`, { headers: { "If-None-Match": etag ?? "" } });
    expect(notModified.status).toBe(304);
    expect(await notModified.text()).toBe("");
  });

  it("coalesces concurrent misses into one fill", async () => {
    const ev = await createEvent(organizer);
    catalogCache.clear();
    const before = metrics.value("breakwater_cache_lookups_total", { layer: "coalesced" });
    const reads = await Promise.all(Array.from({ length: 20 }, () => call(`/v1/events/${ev.id}`)));
    expect(reads.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(metrics.value("breakwater_cache_lookups_total", { layer: "coalesced" }) - before).toBeGreaterThanOrEqual(19);
  });

  it("answers 404 for unknown and malformed ids without touching D1 twice", async () => {
    const before = metrics.sum("breakwater_d1_queries_total", { db: "catalog" });
    for (let i = 0; i < 5; i++) {
      const res = await call("/v1/events/evt_0000000000000000zzzz");
      expect(res.status).toBe(404);
      expect(((await res.json()) as Problem).code).toBe("not_found");
    }
    expect(metrics.sum("breakwater_d1_queries_total", { db: "catalog" }) - before).toBeLessThanOrEqual(1);
    const bad = await call("/v1/events/'; DROP TABLE events;--");
    expect(bad.status).toBe(404);
    expect(metrics.sum("breakwater_d1_queries_total", { db: "catalog" }) - before).toBeLessThanOrEqual(1);
  });

  it("shows an organizer's change after the micro-cache lifetime at most", async () => {
    const ev = await createEvent(organizer);
    expect((await call(`/v1/events/${ev.id}`)).status).toBe(200);
    const patched = await call(`/v1/events/${ev.id}`, { method: "PATCH", token: organizer, json: { name: "Night Drive II" } });
    expect(patched.status).toBe(200);
    const body = (await (await call(`/v1/events/${ev.id}`)).json()) as { event: { name: string; version: number } };
    expect(body.event).toMatchObject({ name: "Night Drive II", version: 2 });
  });
});

describe("version manifest", () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const validated = () => metrics.value("breakwater_cache_lookups_total", { layer: "validated" });

  it("publishes every upcoming event's version to KV", async () => {
    const ev = await createEvent(organizer);
    const manifest = await env.CATALOG_KV.get<{ v: Record<string, number> }>("events:versions", "json");
    expect(manifest?.v[ev.id]).toBe(1);
  });

  it("rebuilds the list and the manifest from one D1 batch, so both show the same change", async () => {
    const ev = await createEvent(organizer);
    const batch = vi.spyOn(env.CATALOG_DB, "batch");
    try {
      const res = await call(`/v1/events/${ev.id}`, { method: "PATCH", token: organizer, json: { name: "Night Drive II" } });
      expect(res.status).toBe(200);
      expect(batch).toHaveBeenCalledTimes(1);
      expect(batch.mock.calls[0]?.[0]).toHaveLength(2);
    } finally {
      batch.mockRestore();
    }
    const list = await env.CATALOG_KV.get<{ events: { id: string; name: string }[] }>("events:list", "json");
    const manifest = await env.CATALOG_KV.get<{ v: Record<string, number> }>("events:versions", "json");
    expect(list?.events.find((e) => e.id === ev.id)?.name).toBe("Night Drive II");
    expect(manifest?.v[ev.id]).toBe(2);
  });

  it("keeps an unchanged event in the isolate past its second, and shows a change made elsewhere within it", async () => {
    const ev = await createEvent(organizer);
    expect((await call(`/v1/events/${ev.id}`)).status).toBe(200);
    await sleep(1_100);
    const before = validated();
    const again = await call(`/v1/events/${ev.id}`);
    expect(((await again.json()) as { event: { name: string } }).event.name).toBe("Night Drive");
    expect(validated()).toBe(before + 1);

    // Another isolate of this data centre changes the event: D1, KV and its own data centre's Cache API,
    // but not this isolate's memory.
    await env.CATALOG_DB.prepare("UPDATE events SET name = 'Night Drive (moved)', version = 2 WHERE id = ?").bind(ev.id).run();
    const published = await env.CATALOG_KV.get<{ event: EventDoc }>(`event:${ev.id}`, "json");
    if (!published) throw new Error("event document missing from KV");
    await publishEvent(
      { db: catalogDb(env.CATALOG_DB), kv: env.CATALOG_KV },
      { ...published.event, name: "Night Drive (moved)", version: 2 },
    );
    await Promise.all(
      [`/__cache/v1/events/${ev.id}`, "/__cache/catalog-versions"].map((p) => caches.default.delete(`https://breakwater.test${p}`)),
    );
    await sleep(1_100);
    const changed = (await (await call(`/v1/events/${ev.id}`)).json()) as { event: { name: string; version: number } };
    expect(changed.event).toMatchObject({ name: "Night Drive (moved)", version: 2 });
  });
});

describe("GET /v1/events", () => {
  it("lists upcoming events with minPrice and soldOut", async () => {
    const ev = await createEvent(organizer);
    catalogCache.clear();
    const res = await call("/v1/events");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { events: Record<string, unknown>[] };
    expect(body.events.find((e) => e.id === ev.id)).toEqual({
      id: ev.id,
      name: ev.name,
      venue: "Hall 7",
      startsAt: ev.startsAt,
      saleStartsAt: ev.saleStartsAt,
      minPrice: 5000,
      currency: "EUR",
      soldOut: false,
    });
  });
});

describe("organizer security", () => {
  it("lets only the event's organizer or an admin change it", async () => {
    const ev = await createEvent(organizer);
    const other = await call(`/v1/events/${ev.id}`, { method: "PATCH", token: otherOrganizer, json: { name: "Mine now" } });
    expect(other.status).toBe(404);
    const asBuyer = await call(`/v1/events/${ev.id}`, { method: "PATCH", token: buyer, json: { name: "Mine now" } });
    expect(asBuyer.status).toBe(403);
    const asAdmin = await call(`/v1/events/${ev.id}`, { method: "PATCH", token: admin, json: { venue: "Hall 8" } });
    expect(asAdmin.status).toBe(200);
    const row = await env.CATALOG_DB.prepare("SELECT name, venue FROM events WHERE id = ?").bind(ev.id).first();
    expect(row).toEqual({ name: "Night Drive", venue: "Hall 8" });
  });
});

describe("malformed requests get a 4xx problem and write nothing", () => {
  const secret = "test-jwt-secret-0123456789abcdef";
  const now = () => Math.floor(Date.now() / 1000);
  const cases: { name: string; status: number; code: string; init: () => Promise<RequestInit & { token?: string; json?: unknown }> }[] = [
    {
      name: "bad JSON",
      status: 400,
      code: "validation_failed",
      init: async () => ({ token: organizer, body: '{"name": ', headers: { "Content-Type": "application/json" } }),
    },
    {
      name: "not JSON at all",
      status: 415,
      code: "unsupported_media_type",
      init: async () => ({ token: organizer, body: "name=x", headers: { "Content-Type": "application/x-www-form-urlencoded" } }),
    },
    { name: "JSON array", status: 400, code: "validation_failed", init: async () => ({ token: organizer, json: [eventInput()] }) },
    {
      name: "wrong types",
      status: 400,
      code: "validation_failed",
      init: async () => ({ token: organizer, json: eventInput({ perCustomerLimit: "four", currency: 978 }) }),
    },
    {
      name: "unknown top-level field",
      status: 400,
      code: "validation_failed",
      init: async () => ({ token: organizer, json: eventInput({ discount: 50 }) }),
    },
    {
      name: "unknown section field",
      status: 400,
      code: "validation_failed",
      init: async () => ({
        token: organizer,
        json: eventInput({ sections: [{ id: "x", name: "X", kind: "ga", price: 1, capacity: 5, vip: true }] }),
      }),
    },
    {
      name: "unknown section kind",
      status: 400,
      code: "validation_failed",
      init: async () => ({ token: organizer, json: eventInput({ sections: [{ id: "x", name: "X", kind: "box", price: 1 }] }) }),
    },
    {
      name: "sale after start",
      status: 400,
      code: "validation_failed",
      init: async () => ({
        token: organizer,
        json: eventInput({ saleStartsAt: "2999-01-02T00:00:00Z", startsAt: "2999-01-01T00:00:00Z" }),
      }),
    },
    {
      name: "event in the past",
      status: 400,
      code: "validation_failed",
      init: async () => ({
        token: organizer,
        json: eventInput({ startsAt: "2001-01-01T00:00:00Z", saleStartsAt: "2000-01-01T00:00:00Z" }),
      }),
    },
    {
      name: "negative price",
      status: 400,
      code: "validation_failed",
      init: async () => ({
        token: organizer,
        json: eventInput({ sections: [{ id: "x", name: "X", kind: "ga", price: -1, capacity: 5 }] }),
      }),
    },
    {
      name: "zero limit",
      status: 400,
      code: "validation_failed",
      init: async () => ({ token: organizer, json: eventInput({ perCustomerLimit: 0 }) }),
    },
    {
      name: "no sections",
      status: 400,
      code: "validation_failed",
      init: async () => ({ token: organizer, json: eventInput({ sections: [] }) }),
    },
    {
      name: "duplicate section ids",
      status: 400,
      code: "validation_failed",
      init: async () => ({
        token: organizer,
        json: eventInput({
          sections: [
            { id: "x", name: "X", kind: "ga", price: 1, capacity: 5 },
            { id: "x", name: "Y", kind: "ga", price: 1, capacity: 5 },
          ],
        }),
      }),
    },
    {
      name: "more shards than capacity",
      status: 400,
      code: "validation_failed",
      init: async () => ({
        token: organizer,
        json: eventInput({ sections: [{ id: "x", name: "X", kind: "ga", price: 1, capacity: 2, shards: 4 }] }),
      }),
    },
    {
      name: "more Inventory DOs than an event may have (100 GA sections x 64 shards)",
      status: 400,
      code: "validation_failed",
      init: async () => ({
        token: organizer,
        json: eventInput({
          sections: Array.from({ length: 100 }, (_, i) => ({ id: `s${i}`, name: `S${i}`, kind: "ga", price: 1, capacity: 64, shards: 64 })),
        }),
      }),
    },
    {
      name: "oversized body",
      status: 413,
      code: "payload_too_large",
      init: async () => ({ token: organizer, json: eventInput({ name: "x".repeat(70_000) }) }),
    },
    { name: "missing token", status: 401, code: "unauthorized", init: async () => ({ json: eventInput() }) },
    {
      name: "not a bearer token",
      status: 401,
      code: "unauthorized",
      init: async () => ({ json: eventInput(), headers: { Authorization: "Basic b3JnOnB3" } }),
    },
    { name: "garbage token", status: 401, code: "unauthorized", init: async () => ({ json: eventInput(), token: "abc.def.ghi" }) },
    {
      name: "forged token (wrong secret)",
      status: 401,
      code: "unauthorized",
      init: async () => ({
        json: eventInput(),
        token: await sign({ sub: "org-1", role: "organizer", exp: now() + 600 }, "not-the-secret", "HS256"),
      }),
    },
    {
      name: "expired token",
      status: 401,
      code: "unauthorized",
      init: async () => ({ json: eventInput(), token: await sign({ sub: "org-1", role: "organizer", exp: now() - 10 }, secret, "HS256") }),
    },
    {
      name: "alg none token",
      status: 401,
      code: "unauthorized",
      init: async () => {
        const b64 = (o: unknown) => btoa(JSON.stringify(o)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
        return {
          json: eventInput(),
          token: `${b64({ alg: "none", typ: "JWT" })}.${b64({ sub: "org-1", role: "admin", exp: now() + 600 })}.`,
        };
      },
    },
    {
      name: "token with an unknown role",
      status: 401,
      code: "unauthorized",
      init: async () => ({ json: eventInput(), token: await sign({ sub: "org-1", role: "root", exp: now() + 600 }, secret, "HS256") }),
    },
    { name: "wrong role (buyer)", status: 403, code: "forbidden", init: async () => ({ json: eventInput(), token: buyer }) },
  ];

  for (const tc of cases) {
    it(`${tc.name} → ${tc.status} ${tc.code}`, async () => {
      const before = await countEvents();
      const listBefore = await env.CATALOG_KV.get("events:list");
      const res = await call("/v1/events", { method: "POST", ...(await tc.init()) });
      expect(res.status).toBe(tc.status);
      expect(res.headers.get("Content-Type")).toBe("application/problem+json");
      const problem = (await res.json()) as Problem;
      expect(problem).toMatchObject({ status: tc.status, code: tc.code, requestId: res.headers.get("X-Request-Id") });
      expect(problem.title.length).toBeGreaterThan(0);
      expect(problem.type).toMatch(/^https:\/\//);
      expect(await countEvents()).toBe(before);
      expect(await env.CATALOG_KV.get("events:list")).toBe(listBefore);
    });
  }

  it("lists each invalid field in the problem", async () => {
    const res = await call("/v1/events", {
      method: "POST",
      token: organizer,
      json: eventInput({ perCustomerLimit: "four", currency: "euro" }),
    });
    const problem = (await res.json()) as Problem;
    expect(problem.errors?.map((e) => e.path).sort()).toEqual(["currency", "perCustomerLimit"]);
  });
});

describe("errors and headers", () => {
  it("answers unknown routes with a 404 problem", async () => {
    const res = await call("/v1/nope");
    expect(res.status).toBe(404);
    expect(((await res.json()) as Problem).code).toBe("not_found");
  });

  it("sets security headers and echoes a sane incoming request id", async () => {
    const res = await call("/healthz", { headers: { "X-Request-Id": "client-req-12345" } });
    expect(res.headers.get("X-Request-Id")).toBe("client-req-12345");
    expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(res.headers.get("Strict-Transport-Security")).toContain("max-age=");
    const weird = await call("/healthz", { headers: { "X-Request-Id": "<script>" } });
    expect(weird.headers.get("X-Request-Id")).not.toBe("<script>");
  });

  it("gives cached reads, 200 and 304 alike, the edge headers of a public answer", async () => {
    const ev = await createEvent(organizer);
    const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const first = await call(`/v1/events/${ev.id}`, { headers: { "X-Request-Id": "client-req-cached", traceparent: parent } });
    const etag = first.headers.get("ETag") ?? "";
    const notModified = await call(`/v1/events/${ev.id}`, { headers: { "If-None-Match": etag, "X-Request-Id": "client-req-304" } });
    expect(notModified.status).toBe(304);
    for (const [res, id] of [
      [first, "client-req-cached"],
      [notModified, "client-req-304"],
    ] as const) {
      expect(res.headers.get("X-Request-Id")).toBe(id);
      expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
      expect(res.headers.get("Content-Security-Policy")).toContain("default-src 'none'");
      expect(res.headers.get("Cache-Control")).toBe("public, max-age=1, s-maxage=5, stale-while-revalidate=30");
      // Public answers carry no per-request span (workers/middleware/trace.ts), nor headers that do nothing for JSON.
      expect(res.headers.has("traceparent")).toBe(false);
      expect(res.headers.has("Referrer-Policy")).toBe(false);
      expect(res.headers.has("Cross-Origin-Resource-Policy")).toBe(false);
    }
    // A private answer to the same caller continues its trace with this request's own span id.
    const health = await call("/healthz", { headers: { traceparent: parent } });
    expect(health.headers.get("traceparent")).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    expect(health.headers.get("traceparent")).not.toContain("b7ad6b7169203331");
    // CORS still applies to a response built in one go.
    const cors = await call(`/v1/events/${ev.id}`, { headers: { Origin: "https://shop.example" } });
    expect(cors.headers.get("Access-Control-Expose-Headers")).toContain("ETag");
  });

  it("answers CORS preflights", async () => {
    const res = await call("/v1/events", {
      method: "OPTIONS",
      headers: { Origin: "https://shop.example", "Access-Control-Request-Method": "POST" },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(res.headers.get("Access-Control-Allow-Headers")).toContain("Idempotency-Key");
    const get = await call("/healthz", { headers: { Origin: "https://shop.example" } });
    expect(get.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(get.headers.get("Access-Control-Expose-Headers")).toContain("X-Request-Id");
    expect((await call("/healthz")).headers.get("Access-Control-Allow-Origin")).toBeNull();
  });
});

describe("dev-token", () => {
  it("refuses bad input", async () => {
    const res = await call("/v1/auth/dev-token", { method: "POST", json: { sub: "x", role: "superuser" } });
    expect(res.status).toBe(400);
  });
});

import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { beforeEach, describe, expect, it } from "vitest";
import { metrics } from "../../lib/metrics";
import type { RateLimitDecision, RateLimitStore, RoutePolicy } from "../../lib/rate-limit";
import { notFound, onError } from "../../workers/middleware/error-handler";
import { BlockedKeys, blockedKeys, type RateLimitOptions, rateLimit } from "../../workers/middleware/rate-limit";
import type { AppEnv } from "../../workers/types";
import type { Problem } from "../helpers";

/** A tiny app: a fake auth sets the principal from `X-User` (none without it), then the limiter. */
function app(opts: Partial<RateLimitOptions> = {}) {
  const a = new Hono<AppEnv>();
  a.use("*", async (c, next) => {
    c.set("requestId", "req-test");
    const user = c.req.header("X-User");
    if (user) c.set("principal", { sub: user, role: "buyer" });
    await next();
  });
  a.post("/hold", rateLimit({ route: "holds", policy: small, ...opts }), (c) => c.json({ ok: true }, 201));
  a.post("/order", rateLimit({ route: "orders", policy: small, ...opts }), (c) => c.json({ ok: true }, 201));
  a.onError(onError);
  a.notFound(notFound(() => a.routes));
  return a;
}

/** Per buyer: 5 back to back, then 1 per 12 s; per IP: generous. */
const small: RoutePolicy = { user: { limit: 5, periodSeconds: 60, burst: 5 }, ip: { limit: 1_000, periodSeconds: 60 } };

let seq = 0;
const unique = (p: string) => `${p}-${seq++}-${crypto.randomUUID().slice(0, 8)}`;
const ipOf = () => `198.51.100.${seq++ % 250}`;

function send(a: Hono<AppEnv>, opts: { path?: string; user?: string; ip?: string; rateLimits?: string; env?: Partial<Env> } = {}) {
  const headers = new Headers();
  if (opts.user) headers.set("X-User", opts.user);
  if (opts.ip) headers.set("CF-Connecting-IP", opts.ip);
  return a.fetch(
    new Request(`https://x${opts.path ?? "/hold"}`, { method: "POST", headers }),
    { ...env, RATE_LIMITS: opts.rateLimits ?? "", ...opts.env },
    createExecutionContext(),
  );
}

const doCalls = (route = "holds") => metrics.sum("breakwater_ratelimit_do_calls_total", { route });
const decisions = (result: string, route = "holds") => metrics.sum("breakwater_ratelimit_decisions_total", { route, result });

/** Parses an sf-list of `"name";k=v;…` items; throws on anything malformed. */
function sfItems(value: string | null): Record<string, Record<string, number>> {
  if (value === null) throw new Error("header missing");
  const out: Record<string, Record<string, number>> = {};
  for (const item of value.split(/,\s*/)) {
    const m = /^"([^"\\]+)"((?:;[a-z][a-z0-9_.*-]*=\d+)+)$/.exec(item);
    if (!m) throw new Error(`malformed item: ${item}`);
    const params: Record<string, number> = {};
    for (const p of (m[2] as string).slice(1).split(";")) {
      const [k, v] = p.split("=") as [string, string];
      params[k] = Number(v);
    }
    out[m[1] as string] = params;
  }
  return out;
}

const failingStore = (err = new Error("limiter down")): RateLimitStore => ({ kind: "durable-object", check: () => Promise.reject(err) });

beforeEach(() => blockedKeys.clear());

describe("rateLimit: happy path", () => {
  it("lets a buyer through with RateLimit-Policy and RateLimit on the answer", async () => {
    const res = await send(app(), { user: unique("happy"), ip: ipOf() });
    expect(res.status).toBe(201);
    expect(res.headers.get("RateLimit-Policy")).toBe('"holds-user";q=5;w=60, "holds-ip";q=1000;w=60');
    const limits = sfItems(res.headers.get("RateLimit"));
    expect(limits["holds-user"]).toEqual({ r: 4, t: 12 });
    expect(limits["holds-ip"]).toEqual({ r: 999, t: 1 });
  });

  it("lets exactly the burst of many concurrent requests of one buyer through", async () => {
    const a = app();
    const user = unique("concurrent");
    const before = { allowed: decisions("allowed"), refused: decisions("refused") };
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => send(a, { user, ip: `203.0.113.${i}` })));
    expect(results.filter((r) => r.status === 201)).toHaveLength(5);
    expect(results.filter((r) => r.status === 429)).toHaveLength(35);
    // Every request reached the store (none was refused yet when they all arrived).
    expect(decisions("allowed") - before.allowed).toBe(5);
    expect(decisions("refused") - before.refused).toBe(35);
    const remaining = results.filter((r) => r.status === 201).map((r) => sfItems(r.headers.get("RateLimit"))["holds-user"]?.r);
    expect(remaining.sort()).toEqual([0, 1, 2, 3, 4]);
  });

  it("keeps buyers apart and limits only by IP when there is no principal", async () => {
    const a = app();
    const ip = ipOf();
    const first = unique("apart");
    for (let i = 0; i < 5; i++) expect((await send(a, { user: first, ip })).status).toBe(201);
    expect((await send(a, { user: first, ip })).status).toBe(429);
    expect((await send(a, { user: unique("apart"), ip })).status).toBe(201);
    const anonymous = await send(a, { ip });
    expect(anonymous.status).toBe(201);
    expect(Object.keys(sfItems(anonymous.headers.get("RateLimit")))).toEqual(["holds-ip"]);
  });
});

describe("rateLimit: refusals", () => {
  it("answers 429 rate_limited with Retry-After and well-formed draft headers", async () => {
    const a = app();
    const user = unique("refused");
    for (let i = 0; i < 5; i++) await send(a, { user, ip: ipOf() });
    const res = await send(a, { user, ip: ipOf() });
    expect(res.status).toBe(429);
    expect(res.headers.get("Content-Type")).toBe("application/problem+json");
    const body = (await res.json()) as Problem & { retryAfterSeconds: number };
    expect(body).toMatchObject({ code: "rate_limited", status: 429, requestId: "req-test" });
    expect(body.retryAfterSeconds).toBeGreaterThan(11);
    expect(body.retryAfterSeconds).toBeLessThanOrEqual(12);
    expect(res.headers.get("Retry-After")).toBe("12");
    expect(sfItems(res.headers.get("RateLimit-Policy"))).toEqual({ "holds-user": { q: 5, w: 60 }, "holds-ip": { q: 1000, w: 60 } });
    const limits = sfItems(res.headers.get("RateLimit"));
    expect(limits["holds-user"]).toEqual({ r: 0, t: 12 });
    // Retry-After never points earlier than the end of the effective window (draft §6).
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThanOrEqual(limits["holds-user"]?.t as number);
  });

  it("limits one address across buyers, an IPv6 /64 as one address", async () => {
    const a = app({ policy: { ip: { limit: 3, periodSeconds: 60 } } });
    const prefix = `2001:db8:${(seq++ % 0xffff).toString(16)}:1`;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await send(a, { user: unique("nat"), ip: `${prefix}:${i}::${i + 1}` })).status);
    expect(statuses).toEqual([201, 201, 201, 429, 429]);
  });

  it("answers a blocked client from isolate memory, with no store call, until its retry time", async () => {
    let now = 1_000_000;
    const memory = new BlockedKeys();
    const a = app({ blocked: memory, now: () => now });
    const user = unique("blocked");
    const ip = ipOf();
    for (let i = 0; i < 6; i++) await send(a, { user, ip });
    expect(memory.size).toBe(1);
    const calls = doCalls();
    const cached = decisions("blocked_cached");
    for (let i = 0; i < 10; i++) {
      const res = await send(a, { user, ip });
      expect(res.status).toBe(429);
      expect(res.headers.get("Retry-After")).toBe("12");
      expect(sfItems(res.headers.get("RateLimit"))["holds-user"]).toEqual({ r: 0, t: 12 });
    }
    expect(doCalls()).toBe(calls);
    expect(decisions("blocked_cached") - cached).toBe(10);
    // Past the remembered retry time the store is asked again (two keys: buyer and IP).
    now += 12_001;
    await send(a, { user, ip });
    expect(doCalls()).toBe(calls + 2);
  });

  it("bounds the memory of blocked keys", () => {
    const memory = new BlockedKeys(3);
    memory.block("a", 100, 0);
    memory.block("b", 5, 0);
    memory.block("c", 100, 0);
    memory.block("d", 100, 10); // "b" expired: it goes first
    expect([memory.remaining("a", 10), memory.remaining("b", 10), memory.remaining("d", 10)]).toEqual([90, 0, 90]);
    memory.block("e", 100, 10); // full of live keys: the oldest goes
    expect(memory.size).toBe(3);
    expect(memory.remaining("a", 10)).toBe(0);
    expect(memory.remaining("e", 10)).toBe(90);
  });
});

describe("rateLimit: the client address", () => {
  it("puts requests without CF-Connecting-IP (local runs) in one shared address bucket", async () => {
    const a = app({ policy: { ip: { limit: 2, periodSeconds: 60 } } });
    // No other test of this file uses the `holds:ip:local` bucket: it fills after two requests from anyone.
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await send(a, { user: unique("no-ip") })).status);
    expect(statuses).toEqual([201, 201, 429]);
    // A request with an address is not in that bucket.
    expect((await send(a, { user: unique("no-ip"), ip: ipOf() })).status).toBe(201);
  });

  it("skips the address limit when clientIp gives none, keeping the buyer limit", async () => {
    const a = app({
      clientIp: () => undefined,
      policy: { user: { limit: 1, periodSeconds: 60, burst: 1 }, ip: { limit: 1, periodSeconds: 60 } },
    });
    const ip = ipOf();
    // Two buyers from one address: an address limit of 1 would refuse the second.
    for (let i = 0; i < 2; i++) {
      const res = await send(a, { user: unique("skip-ip"), ip });
      expect(res.status).toBe(201);
      expect(Object.keys(sfItems(res.headers.get("RateLimit")))).toEqual(["holds-user"]);
    }
    const user = unique("skip-ip");
    expect((await send(a, { user })).status).toBe(201);
    expect((await send(a, { user })).status).toBe(429);
  });
});

describe("rateLimit: configuration per route", () => {
  it("applies RATE_LIMITS overrides to their route only, and false switches a dimension off", async () => {
    const a = app();
    const rateLimits = JSON.stringify({ orders: { user: { limit: 1, periodSeconds: 30 }, ip: false } });
    const user = unique("per-route");
    const ip = ipOf();
    const first = await send(a, { path: "/order", user, ip, rateLimits });
    expect(first.status).toBe(201);
    expect(first.headers.get("RateLimit-Policy")).toBe('"orders-user";q=1;w=30');
    expect((await send(a, { path: "/order", user, ip, rateLimits })).status).toBe(429);
    // The holds mount keeps its own policy.
    const hold = await send(a, { user, ip, rateLimits });
    expect(hold.status).toBe(201);
    expect(sfItems(hold.headers.get("RateLimit-Policy"))["holds-user"]).toEqual({ q: 5, w: 60 });
  });

  it("uses the code's defaults when a mount gives no policy", async () => {
    const a = new Hono<AppEnv>();
    a.use("*", async (c, next) => {
      c.set("principal", { sub: "defaults", role: "buyer" });
      await next();
    });
    a.post("/queue", rateLimit({ route: "queue" }), (c) => c.text("ok"));
    const res = await a.fetch(new Request("https://x/queue", { method: "POST" }), { ...env, RATE_LIMITS: "" }, createExecutionContext());
    expect(sfItems(res.headers.get("RateLimit-Policy"))).toEqual({ "queue-user": { q: 60, w: 60 }, "queue-ip": { q: 3000, w: 60 } });
  });

  it("does nothing, not even a store call, when RATE_LIMITS is off", async () => {
    const a = app();
    const user = unique("off");
    const calls = doCalls();
    for (let i = 0; i < 10; i++) {
      const res = await send(a, { user, rateLimits: "off" });
      expect(res.status).toBe(201);
      expect(res.headers.get("RateLimit")).toBeNull();
    }
    expect(doCalls()).toBe(calls);
  });

  it("fails loudly on a malformed RATE_LIMITS instead of dropping the limits (even when failing open)", async () => {
    const calls = doCalls();
    const res = await send(app({ failure: "open" }), { user: unique("typo"), rateLimits: '{"holds":{"user":{"limit":"5"}}}' });
    expect(res.status).toBe(500);
    expect(((await res.json()) as Problem).code).toBe("internal_error");
    expect(doCalls()).toBe(calls);
  });

  it("refuses to start the Upstash store without its credentials", async () => {
    const res = await send(app(), { user: unique("upstash"), rateLimits: '{"store":"upstash"}' });
    expect(res.status).toBe(500);
  });
});

describe("rateLimit: store failures", () => {
  it("fails open by default: the request goes through, counted and logged", async () => {
    const lines: string[] = [];
    const errors = metrics.sum("breakwater_ratelimit_errors_total", { route: "holds" });
    const open = decisions("failed_open");
    const res = await send(app({ store: () => failingStore(), log: (l) => lines.push(l) }), { user: unique("fo"), ip: ipOf() });
    expect(res.status).toBe(201);
    expect(res.headers.get("RateLimit-Policy")).toContain('"holds-user"');
    expect(res.headers.get("RateLimit")).toBeNull();
    expect(metrics.sum("breakwater_ratelimit_errors_total", { route: "holds" }) - errors).toBe(2);
    expect(decisions("failed_open") - open).toBe(1);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      level: "warn",
      msg: "rate limiter unavailable",
      route: "holds",
      failure: "open",
    });
  });

  it("fails closed when asked: 503 overloaded with Retry-After", async () => {
    const res = await send(app({ store: () => failingStore(), failure: "closed", log: () => {} }), { user: unique("fc"), ip: ipOf() });
    expect(res.status).toBe(503);
    expect(res.headers.get("Retry-After")).toBe("1");
    expect(((await res.json()) as Problem).code).toBe("overloaded");
  });

  it("treats a Limiter binding that throws, or a store that hangs, as a failure", async () => {
    const broken = {
      idFromName: () => {
        throw new Error("binding gone");
      },
    } as unknown as Env["LIMITER"];
    expect((await send(app({ log: () => {} }), { user: unique("sync"), env: { LIMITER: broken } })).status).toBe(201);
    const hanging: RateLimitStore = { kind: "durable-object", check: () => new Promise<RateLimitDecision>(() => {}) };
    const started = Date.now();
    const res = await send(app({ store: () => hanging, timeoutMs: 50, failure: "closed", log: () => {} }), { user: unique("hang") });
    expect(res.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("still refuses when one store call refuses and the other fails", async () => {
    const refusing: RateLimitDecision = { allowed: false, remaining: 0, resetSeconds: 3, retryAfterSeconds: 3, windowSeconds: 3 };
    const store: RateLimitStore = {
      kind: "durable-object",
      check: (key) => (key.includes(":user:") ? Promise.resolve(refusing) : Promise.reject(new Error("ip shard down"))),
    };
    const res = await send(app({ store: () => store, log: () => {} }), { user: unique("mixed"), ip: ipOf() });
    expect(res.status).toBe(429);
    expect(res.headers.get("Retry-After")).toBe("3");
  });
});

describe("rate limits on the real routes", () => {
  it("limit POST /v1/events/:id/holds per buyer with the default policy", async () => {
    const { app: realApp } = await import("../../workers/app");
    const { createEvent, tokenFor } = await import("../helpers");
    const ev = await createEvent(await tokenFor("rl-org", "organizer"), { perCustomerLimit: 50 });
    const token = await tokenFor(unique("rl-buyer"), "buyer");
    const hold = () =>
      realApp.fetch(
        new Request(`https://x/v1/events/${ev.id}/holds`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "CF-Connecting-IP": "192.0.2.44" },
          body: JSON.stringify({ sectionId: "floor", quantity: 1 }),
        }),
        { ...env, RATE_LIMITS: "" },
        createExecutionContext(),
      );
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await hold()).status);
    // Default holds policy per buyer: 5 back to back.
    expect(statuses).toEqual([201, 201, 201, 201, 201, 429, 429]);
  });
});

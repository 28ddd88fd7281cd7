import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { beforeEach, describe, expect, it } from "vitest";
import { metrics } from "../../lib/metrics";
import { app as realApp } from "../../workers/app";
import { notFound, onError } from "../../workers/middleware/error-handler";
import { forgetBlockedKeys, rateLimit } from "../../workers/middleware/rate-limit";
import type { AppEnv } from "../../workers/types";
import { createEvent, type Problem, tokenFor } from "../helpers";

function app(failure?: "open" | "closed") {
  const a = new Hono<AppEnv>();
  a.use("*", async (c, next) => {
    c.set("requestId", "test");
    c.set("principal", { sub: c.req.header("X-User") ?? "anon", role: "buyer" });
    await next();
  });
  a.post("/hold", rateLimit({ route: "holds", ...(failure ? { failure } : {}) }), (c) => c.json({ ok: true }));
  a.onError(onError);
  a.notFound(notFound);
  return a;
}

const limits = JSON.stringify({ holds: { user: { limit: 5, periodSeconds: 60 }, ip: { limit: 1000, periodSeconds: 60 } } });
const send = (a: Hono<AppEnv>, user: string, envOver: Partial<Env> = {}, ip = "203.0.113.7") =>
  a.fetch(
    new Request("https://x/hold", { method: "POST", headers: { "X-User": user, "CF-Connecting-IP": ip } }),
    { ...env, RATE_LIMITS: limits, ...envOver },
    createExecutionContext(),
  );

beforeEach(() => forgetBlockedKeys());

describe("rateLimit middleware", () => {
  it("lets exactly the limit through for one buyer under concurrency, with draft headers", async () => {
    const a = app();
    const results = await Promise.all(Array.from({ length: 30 }, () => send(a, "conc-user")));
    expect(results.filter((r) => r.status === 200)).toHaveLength(5);
    const refused = results.filter((r) => r.status === 429);
    expect(refused).toHaveLength(25);
    const r = refused[0] as Response;
    expect(((await r.json()) as Problem).code).toBe("rate_limited");
    expect(Number(r.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect(r.headers.get("RateLimit-Policy")).toContain('"holds-user";q=5;w=60');
    const ok = results.find((x) => x.status === 200) as Response;
    expect(ok.headers.get("RateLimit")).toMatch(/"holds-user";r=\d+;t=\d+, "holds-ip";r=\d+;t=\d+/);
  });

  it("keeps buyers apart", async () => {
    const a = app();
    for (let i = 0; i < 5; i++) expect((await send(a, "apart-1")).status).toBe(200);
    expect((await send(a, "apart-1")).status).toBe(429);
    expect((await send(a, "apart-2")).status).toBe(200);
  });

  it("answers a blocked client from isolate memory without calling the DO", async () => {
    const a = app();
    for (let i = 0; i < 6; i++) await send(a, "blocked-user");
    const calls = metrics.sum("breakwater_ratelimit_do_calls_total");
    for (let i = 0; i < 10; i++) expect((await send(a, "blocked-user")).status).toBe(429);
    expect(metrics.sum("breakwater_ratelimit_do_calls_total")).toBe(calls);
  });

  it("limits by IP across buyers", async () => {
    const a = app();
    const tight = JSON.stringify({ holds: { ip: { limit: 3, periodSeconds: 60 } } });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await send(a, `ip-user-${i}`, { RATE_LIMITS: tight }, "198.51.100.9")).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
  });

  it("fails open by default and closed when asked, when the Limiter DO is unreachable", async () => {
    const broken = {
      idFromName: () => ({}) as DurableObjectId,
      get: () => ({
        check: () => Promise.reject(new Error("limiter down")),
      }),
    } as unknown as Env["LIMITER"];
    const before = metrics.sum("breakwater_ratelimit_errors_total");
    expect((await send(app(), "fo", { LIMITER: broken })).status).toBe(200);
    expect(metrics.sum("breakwater_ratelimit_errors_total")).toBe(before + 1);
    const closed = await send(app("closed"), "fc", { LIMITER: broken });
    expect(closed.status).toBe(503);
    expect(((await closed.json()) as Problem).code).toBe("overloaded");
  });

  it("does nothing when RATE_LIMITS is off", async () => {
    const a = app();
    for (let i = 0; i < 20; i++) expect((await send(a, "off-user", { RATE_LIMITS: "off" })).status).toBe(200);
  });
});

describe("rate limits on the real routes", () => {
  it("limit POST /v1/events/:id/holds per buyer with the default policy", async () => {
    const ev = await createEvent(await tokenFor("rl-org", "organizer"), { perCustomerLimit: 50 });
    const token = await tokenFor("rl-buyer", "buyer");
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
    const statuses = [];
    for (let i = 0; i < 8; i++) statuses.push((await hold()).status);
    // Default holds policy per buyer: burst 5.
    expect(statuses.slice(0, 5)).toEqual([201, 201, 201, 201, 201]);
    expect(statuses.slice(5)).toEqual([429, 429, 429]);
  });
});

import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Redis } from "@upstash/redis/cloudflare";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { metrics } from "../../lib/metrics";
import { gcra, type RateLimitDecision, type RateLimitPolicy } from "../../lib/rate-limit";
import { GCRA_LUA, gcraScriptSha, type UpstashScripting, upstashStore, upstashStoreFromEnv } from "../../lib/rate-limit-upstash";
import { onError } from "../../workers/middleware/error-handler";
import { rateLimit } from "../../workers/middleware/rate-limit";
import type { AppEnv } from "../../workers/types";
import type { UpstashProxyInfo } from "../setup/upstash-proxy";

declare global {
  namespace Cloudflare {
    interface Env {
      /** The loopback Upstash REST proxy of test/setup/upstash-proxy.ts. */
      TEST_UPSTASH: UpstashProxyInfo;
    }
  }
}

const proxy = env.TEST_UPSTASH;
const client = () => new Redis({ url: proxy.url, token: proxy.token, retry: false, enableTelemetry: false });
/** A key prefix of its own per test, so runs sharing the machine's Redis never meet. */
const prefix = () => `bw:test:rl:${crypto.randomUUID()}:`;
const stats = async (): Promise<Record<string, number>> => (await fetch(`${proxy.url}/__stats`)).json();

// Without Redis the run fails in test/setup/upstash-proxy.ts unless REDIS_TESTS=skip asked for the skip.
if (!proxy.redis) console.warn("REDIS_TESTS=skip: the Upstash store tests against Redis are skipped.");

describe.skipIf(!proxy.redis)("Upstash store against the local Redis", () => {
  it("decides exactly like gcra() and the Limiter DO for the same requests", async () => {
    const policy: RateLimitPolicy = { limit: 3, periodSeconds: 2, burst: 4 };
    const steps = [0, 0, 0, 0, 0, 100, 666, 667, 1_400, 1_400, 5_000, 5_001, 5_002, 20_000].map((dt, i) => ({
      at: 1_800_000_000_000 + dt,
      cost: i === 10 ? 3 : i === 11 ? 0 : 1,
    }));
    let now = 0;
    const store = upstashStore(client(), { prefix: prefix(), now: () => now });
    const g = gcra(policy);
    const limiter = env.LIMITER.get(env.LIMITER.idFromName(`parity-${crypto.randomUUID()}`));
    let tat: number | undefined;
    for (const { at, cost } of steps) {
      now = at;
      const local = g.check(tat, at, cost);
      tat = local.tat;
      const viaRedis = await store.check("k", policy, cost);
      const viaDo = await limiter.check("k", policy, at, cost);
      expect(viaRedis).toEqual(local.decision);
      expect(viaDo).toEqual(local.decision);
    }
  });

  it("lets exactly `burst` of many concurrent checks of one key through (atomic script)", async () => {
    const store = upstashStore(client(), { prefix: prefix() });
    const results = await Promise.all(Array.from({ length: 40 }, () => store.check("hot", { limit: 100, periodSeconds: 60, burst: 6 })));
    expect(results.filter((d) => d.allowed)).toHaveLength(6);
    expect(results.filter((d) => !d.allowed).every((d) => d.remaining === 0 && d.retryAfterSeconds > 0)).toBe(true);
  });

  it("calls the script by EVALSHA, never resending its body once Redis has it", async () => {
    const store = upstashStore(client(), { prefix: prefix() });
    await store.check("warm", { limit: 10, periodSeconds: 1 }); // loads the script if this Redis lacks it
    const before = await stats();
    for (let i = 0; i < 5; i++) await store.check("warm", { limit: 10, periodSeconds: 1 });
    const after = await stats();
    expect((after.EVALSHA ?? 0) - (before.EVALSHA ?? 0)).toBe(5);
    expect(after.EVAL ?? 0).toBe(before.EVAL ?? 0);
    expect(after["SCRIPT LOAD"] ?? 0).toBe(before["SCRIPT LOAD"] ?? 0);
  });

  it("keeps each key only until it is rested (Redis expiry is the purge)", async () => {
    const p = prefix();
    const store = upstashStore(client(), { prefix: p });
    const d = await store.check("ttl", { limit: 1, periodSeconds: 30, burst: 1 });
    const pttl = await client().pttl(`${p}ttl`);
    expect(pttl).toBeGreaterThan(29_000);
    expect(pttl).toBeLessThanOrEqual(d.resetSeconds * 1000 + 1_000);
    expect((await store.check("ttl", { limit: 1, periodSeconds: 30, burst: 1 })).allowed).toBe(false);
  });

  it("is what the middleware uses when RATE_LIMITS selects it and the credentials are set", async () => {
    const a = new Hono<AppEnv>();
    const user = `upstash-${crypto.randomUUID()}`;
    a.use("*", async (c, next) => {
      c.set("requestId", "req-upstash");
      c.set("principal", { sub: user, role: "buyer" });
      await next();
    });
    a.post("/order", rateLimit({ route: "orders", policy: { user: { limit: 2, periodSeconds: 60 } } }), (c) => c.text("ok", 201));
    a.onError(onError);
    const vars = {
      ...env,
      RATE_LIMITS: JSON.stringify({ store: "upstash" }),
      UPSTASH_REDIS_REST_URL: proxy.url,
      UPSTASH_REDIS_REST_TOKEN: proxy.token,
    };
    const before = await stats();
    const calls = metrics.sum("breakwater_ratelimit_do_calls_total", { route: "orders" });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++)
      statuses.push((await a.fetch(new Request("https://x/order", { method: "POST" }), vars, createExecutionContext())).status);
    expect(statuses).toEqual([201, 201, 429]);
    expect(metrics.sum("breakwater_ratelimit_do_calls_total", { route: "orders" }) - calls).toBe(3);
    const after = await stats();
    expect((after.EVALSHA ?? 0) - (before.EVALSHA ?? 0)).toBeGreaterThanOrEqual(3);
  });
});

describe("Upstash store: protocol and failures (fake client)", () => {
  const reply = (allowed: number, tat: number, now: number) => [allowed, tat, now];

  function fake(behaviour: (call: number) => unknown) {
    const calls: string[] = [];
    let n = 0;
    const redis: UpstashScripting = {
      evalsha: (async (sha: string) => {
        calls.push(`EVALSHA ${sha.slice(0, 8)}`);
        const out = behaviour(n++);
        if (out instanceof Error) throw out;
        return out;
      }) as UpstashScripting["evalsha"],
      scriptLoad: async (script: string) => {
        calls.push("SCRIPT LOAD");
        expect(script).toBe(GCRA_LUA);
        return gcraScriptSha();
      },
    };
    return { redis, calls };
  }

  it("loads the script once on NOSCRIPT and retries by EVALSHA", async () => {
    const sha = (await gcraScriptSha()).slice(0, 8);
    const now = 1_800_000_000_000_000;
    const { redis, calls } = fake((i) => (i === 0 ? new Error("NOSCRIPT No matching script. Please use EVAL.") : reply(1, -1, now)));
    const store = upstashStore(redis);
    const d: RateLimitDecision = await store.check("k", { limit: 2, periodSeconds: 1 });
    expect(d).toMatchObject({ allowed: true, remaining: 1 });
    await store.check("k", { limit: 2, periodSeconds: 1 });
    expect(calls).toEqual([`EVALSHA ${sha}`, "SCRIPT LOAD", `EVALSHA ${sha}`, `EVALSHA ${sha}`]);
  });

  it("rejects on other errors and on replies it does not understand", async () => {
    await expect(
      upstashStore(fake(() => new Error("ERR connection reset")).redis).check("k", { limit: 1, periodSeconds: 1 }),
    ).rejects.toThrow(/connection reset/);
    await expect(upstashStore(fake(() => "OK").redis).check("k", { limit: 1, periodSeconds: 1 })).rejects.toThrow(/unexpected/);
    // A script that admits what the library would refuse is a bug, not a decision.
    const now = 1_800_000_000_000_000;
    await expect(
      upstashStore(fake(() => reply(1, now + 60_000_000, now)).redis).check("k", { limit: 1, periodSeconds: 1 }),
    ).rejects.toThrow(/disagree/);
  });

  it("is not built without credentials", () => {
    expect(upstashStoreFromEnv({})).toBeNull();
    expect(upstashStoreFromEnv({ UPSTASH_REDIS_REST_URL: "https://x.upstash.io" })).toBeNull();
    expect(upstashStoreFromEnv({ UPSTASH_REDIS_REST_URL: "https://x.upstash.io", UPSTASH_REDIS_REST_TOKEN: "t" })?.kind).toBe("upstash");
  });
});

import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { FLUSH_INTERVAL_MS, Limiter, PURGE_INTERVAL_MS } from "../../durable-objects/limiter";
import { limiterObjectName, limiterStore, type RateLimitPolicy } from "../../lib/rate-limit";

let n = 0;
/** A fresh Limiter object (storage persists across the tests of this file). */
const fresh = () => env.LIMITER.get(env.LIMITER.idFromName(`limiter-test-${n++}-${crypto.randomUUID()}`));

const perMinute = (limit: number, burst = limit): RateLimitPolicy => ({ limit, periodSeconds: 60, burst });

describe("Limiter DO: decisions", () => {
  it("lets exactly `burst` of many concurrent checks of one key through", async () => {
    const stub = fresh();
    const results = await Promise.all(Array.from({ length: 60 }, () => stub.check("k", perMinute(100, 7))));
    expect(results.filter((d) => d.allowed)).toHaveLength(7);
    const refused = results.filter((d) => !d.allowed);
    expect(refused).toHaveLength(53);
    for (const d of refused) {
      expect(d.remaining).toBe(0);
      expect(d.retryAfterSeconds).toBeGreaterThan(0);
      expect(d.retryAfterSeconds).toBeLessThanOrEqual(0.6);
    }
    expect(new Set(results.filter((d) => d.allowed).map((d) => d.remaining))).toEqual(new Set([0, 1, 2, 3, 4, 5, 6]));
  });

  it("keeps many keys in one object apart", async () => {
    const stub = fresh();
    const policy = perMinute(2);
    for (let k = 0; k < 50; k++) {
      expect((await stub.check(`user-${k}`, policy)).allowed).toBe(true);
      expect((await stub.check(`user-${k}`, policy)).allowed).toBe(true);
    }
    expect((await stub.check("user-3", policy)).allowed).toBe(false);
    expect((await stub.check("user-50", policy)).allowed).toBe(true);
    expect((await stub.stats()).inMemory).toBe(51);
  });

  it("decides at the time it is given, deterministically", async () => {
    const stub = fresh();
    const t0 = 1_800_000_000_000;
    const policy: RateLimitPolicy = { limit: 1, periodSeconds: 10, burst: 1 };
    expect((await stub.check("k", policy, t0)).allowed).toBe(true);
    expect(await stub.check("k", policy, t0 + 4_000)).toMatchObject({ allowed: false, retryAfterSeconds: 6 });
    expect((await stub.check("k", policy, t0 + 10_000)).allowed).toBe(true);
  });

  it("refuses an unusable policy and records nothing", async () => {
    const stub = fresh();
    await runInDurableObject(stub, (limiter: Limiter) => {
      expect(() => limiter.check("k", { limit: 0, periodSeconds: 60 })).toThrow(/limit/);
      expect(limiter.stats()).toEqual({ inMemory: 0, stored: 0, dirty: 0 });
    });
  });

  it("forgets a key on reset", async () => {
    const stub = fresh();
    const policy = perMinute(1);
    await stub.check("k", policy);
    expect((await stub.check("k", policy)).allowed).toBe(false);
    expect(await stub.reset("k")).toBe(true);
    expect((await stub.check("k", policy)).allowed).toBe(true);
    expect(await stub.reset("never-seen")).toBe(false);
  });
});

describe("Limiter DO: state", () => {
  it("writes state behind within a second, and a restarted object keeps enforcing it", async () => {
    const stub = fresh();
    const policy = perMinute(3);
    for (let i = 0; i < 3; i++) await stub.check("buyer", policy);
    expect(await stub.stats()).toEqual({ inMemory: 1, stored: 0, dirty: 1 });
    const alarmAt = await runInDurableObject(stub, (_: Limiter, state) => state.storage.getAlarm());
    expect(alarmAt).not.toBeNull();
    expect((alarmAt as number) - Date.now()).toBeLessThanOrEqual(FLUSH_INTERVAL_MS);

    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.stats()).toEqual({ inMemory: 1, stored: 1, dirty: 0 });

    // A new instance on the same storage (what an eviction or a restart gives) starts with empty memory.
    await runInDurableObject(stub, (_: Limiter, state) => {
      const restarted = new Limiter(state, env);
      expect(restarted.stats()).toMatchObject({ inMemory: 0, stored: 1 });
      expect(restarted.check("buyer", policy).allowed).toBe(false);
      expect(restarted.check("someone-else", policy).allowed).toBe(true);
    });
  });

  it("purges rested keys from memory and SQLite, and stops its alarm when none is left", async () => {
    const stub = fresh();
    const policy: RateLimitPolicy = { limit: 10, periodSeconds: 1, burst: 2 };
    const longAgo = Date.now() - 3_600_000;
    await stub.check("old", policy, longAgo); // rested long ago
    await stub.check("active", perMinute(1)); // TAT a minute ahead
    await runDurableObjectAlarm(stub);
    expect(await stub.stats()).toEqual({ inMemory: 1, stored: 1, dirty: 0 });
    const next = await runInDurableObject(stub, (_: Limiter, state) => state.storage.getAlarm());
    expect((next as number) - Date.now()).toBeGreaterThan(PURGE_INTERVAL_MS - 5_000);

    await stub.reset("active");
    await runDurableObjectAlarm(stub);
    expect(await stub.stats()).toEqual({ inMemory: 0, stored: 0, dirty: 0 });
    expect(await runInDurableObject(stub, (_: Limiter, state) => state.storage.getAlarm())).toBeNull();
  });
});

describe("limiterStore (the edge side)", () => {
  it("sends each key to the object its hash names", async () => {
    const store = limiterStore(env.LIMITER, 16);
    const policy = perMinute(2);
    const key = `route:user:${crypto.randomUUID()}`;
    await store.check(key, policy);
    await store.check(key, policy);
    expect((await store.check(key, policy)).allowed).toBe(false);
    const owner = env.LIMITER.get(env.LIMITER.idFromName(limiterObjectName(key, 16)));
    expect((await owner.check(key, policy)).allowed).toBe(false);
  });
});

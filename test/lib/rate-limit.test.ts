import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  blockedVerdict,
  clientIpKey,
  gcra,
  LIMITER_BUCKETS,
  limiterObjectName,
  parseRateLimits,
  RateLimitConfigError,
  type RateLimitDecision,
  type RateLimitPolicy,
  rateLimitConfig,
  rateLimitItem,
  rateLimitPolicies,
  rateLimitPolicyItem,
  rateVerdict,
  routePolicy,
  sfString,
} from "../../lib/rate-limit";

/** Runs `gcra(policy)` over (time ms, cost) requests, threading the state; returns each decision. */
function run(policy: RateLimitPolicy, requests: { at: number; cost?: number }[]) {
  const g = gcra(policy);
  let tat: number | undefined;
  return requests.map(({ at, cost }) => {
    const step = g.check(tat, at, cost);
    tat = step.tat;
    return step.decision;
  });
}

describe("gcra: happy path", () => {
  it("lets a rested key send `burst` requests back to back, then one per emission interval", () => {
    // 6 per minute = one per 10 s, 3 at once.
    const at = (ms: number) => ({ at: ms });
    const d = run({ limit: 6, periodSeconds: 60, burst: 3 }, [at(0), at(0), at(0), at(0), at(9_999), at(10_000), at(10_000), at(30_000)]);
    expect(d.map((x) => x.allowed)).toEqual([true, true, true, false, false, true, false, true]);
    expect(d[0]).toEqual({ allowed: true, remaining: 2, resetSeconds: 10, retryAfterSeconds: 0, windowSeconds: 10 });
    expect(d[2]).toEqual({ allowed: true, remaining: 0, resetSeconds: 30, retryAfterSeconds: 0, windowSeconds: 10 });
    expect(d[3]).toEqual({ allowed: false, remaining: 0, resetSeconds: 30, retryAfterSeconds: 10, windowSeconds: 10 });
    expect(d[4]?.retryAfterSeconds).toBeCloseTo(0.001, 9);
    // At 30 s the key has earned 2 units back (TAT was 40 s): allowed, 1 left.
    expect(d[7]).toMatchObject({ allowed: true, remaining: 1 });
  });

  it("defaults burst to limit", () => {
    const g = gcra({ limit: 10, periodSeconds: 10 });
    expect(g.policy).toEqual({ limit: 10, periodSeconds: 10, burst: 10 });
    expect(
      run(
        g.policy,
        Array.from({ length: 11 }, () => ({ at: 5 })),
      ).filter((d) => d.allowed),
    ).toHaveLength(10);
  });

  it("is rested again after resetSeconds", () => {
    const policy = { limit: 4, periodSeconds: 8, burst: 4 };
    const d = run(policy, [{ at: 0 }, { at: 0 }, { at: 0 }]);
    const reset = (d[2] as { resetSeconds: number }).resetSeconds;
    expect(reset).toBe(6);
    const after = run(policy, [{ at: 0 }, { at: 0 }, { at: 0 }, { at: reset * 1000 }]);
    expect(after[3]).toMatchObject({ allowed: true, remaining: 3 });
  });

  it("weighs requests by cost and looks without consuming at cost 0", () => {
    const d = run({ limit: 5, periodSeconds: 5, burst: 5 }, [
      { at: 0, cost: 3 },
      { at: 0, cost: 0 },
      { at: 0, cost: 3 },
      { at: 0, cost: 2 },
    ]);
    expect(d.map((x) => [x.allowed, x.remaining])).toEqual([
      [true, 2],
      [true, 2],
      [false, 2],
      [true, 0],
    ]);
    expect(d[2]?.retryAfterSeconds).toBe(1);
  });
});

describe("gcra: errors", () => {
  it("refuses unusable policies and costs", () => {
    expect(() => gcra({ limit: 0, periodSeconds: 1 })).toThrow(RangeError);
    expect(() => gcra({ limit: 1, periodSeconds: 1.5 })).toThrow(/periodSeconds/);
    expect(() => gcra({ limit: 1, periodSeconds: 86_400, burst: 1_000_000 })).toThrow(/too long/);
    const g = gcra({ limit: 2, periodSeconds: 1 });
    expect(() => g.check(undefined, 0, 3)).toThrow(/cost/);
    expect(() => g.check(undefined, Number.NaN)).toThrow(/now/);
  });

  it("leaves the state unchanged when it refuses", () => {
    const g = gcra({ limit: 1, periodSeconds: 60, burst: 1 });
    const first = g.check(undefined, 0);
    const refused = g.check(first.tat, 1_000);
    expect(refused).toMatchObject({ changed: false, tat: first.tat });
    expect(refused.decision.allowed).toBe(false);
  });
});

const policyArb = fc.record({
  limit: fc.integer({ min: 1, max: 50 }),
  periodSeconds: fc.integer({ min: 1, max: 120 }),
  burst: fc.integer({ min: 1, max: 20 }),
});

describe("gcra: properties", () => {
  it("never admits more than limit + burst in any window of periodSeconds (nor more than burst + span/T in any span)", () => {
    fc.assert(
      fc.property(
        policyArb,
        fc.integer({ min: 0, max: 1_800_000_000_000 }),
        fc.array(fc.integer({ min: 0, max: 400_000 }), { minLength: 1, maxLength: 300 }),
        (policy, start, offsets) => {
          const g = gcra(policy);
          const times = offsets.map((o) => start + o).sort((a, b) => a - b);
          let tat: number | undefined;
          const admitted: number[] = [];
          for (const t of times) {
            const step = g.check(tat, t);
            tat = step.tat;
            if (step.decision.allowed) admitted.push(t);
          }
          const windowMs = policy.periodSeconds * 1000;
          for (let i = 0; i < admitted.length; i++) {
            let j = i;
            while (j + 1 < admitted.length && (admitted[j + 1] as number) - (admitted[i] as number) < windowMs) j++;
            const n = j - i + 1;
            expect(n).toBeLessThan(policy.limit + policy.burst);
            const spanUs = ((admitted[j] as number) - (admitted[i] as number)) * 1000;
            expect(n).toBeLessThanOrEqual(policy.burst + Math.floor(spanUs / g.intervalUs));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("decides exactly like a token bucket of `burst` tokens refilled one per interval (model)", () => {
    fc.assert(
      fc.property(
        policyArb,
        fc.array(fc.record({ gapMs: fc.integer({ min: 0, max: 20_000 }), cost: fc.nat(3) }), { minLength: 1, maxLength: 200 }),
        (policy, steps) => {
          const g = gcra(policy);
          const T = g.intervalUs;
          const full = policy.burst * T;
          let credit = full; // µs of credit; a request of cost c needs c·T
          let last = 1_700_000_000_000 * 1000;
          let tat: number | undefined;
          let nowMs = 1_700_000_000_000;
          for (const { gapMs, cost: rawCost } of steps) {
            const cost = Math.min(rawCost, policy.burst);
            nowMs += gapMs;
            const nowUs = nowMs * 1000;
            credit = Math.min(full, credit + (nowUs - last));
            last = nowUs;
            const modelAllowed = credit >= cost * T;
            if (modelAllowed) credit -= cost * T;
            const step = g.check(tat, nowMs, cost);
            tat = step.tat;
            expect(step.decision.allowed).toBe(modelAllowed);
            expect(step.decision.remaining).toBe(Math.floor(credit / T));
            if (!modelAllowed) expect(step.decision.retryAfterSeconds).toBeCloseTo((cost * T - credit) / 1e6, 6);
            expect(step.decision.resetSeconds).toBeCloseTo((full - credit) / 1e6, 6);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("is deterministic given now", () => {
    fc.assert(
      fc.property(policyArb, fc.array(fc.integer({ min: 0, max: 100_000 }), { maxLength: 50 }), (policy, times) => {
        const reqs = [...times].sort((a, b) => a - b).map((at) => ({ at }));
        expect(run(policy, reqs)).toEqual(run(policy, reqs));
      }),
    );
  });
});

describe("RATE_LIMITS", () => {
  it("means the defaults when empty and no limits when off", () => {
    expect(parseRateLimits("")).toEqual({ enabled: true, store: "durable-object", overrides: {} });
    expect(parseRateLimits(undefined).enabled).toBe(true);
    expect(parseRateLimits(" off ").enabled).toBe(false);
  });

  it("overrides per route and dimension, with false switching a dimension off", () => {
    const config = parseRateLimits(JSON.stringify({ store: "upstash", holds: { user: { limit: 2, periodSeconds: 1 }, ip: false } }));
    expect(config.store).toBe("upstash");
    expect(routePolicy(config, "holds")).toEqual({ user: { limit: 2, periodSeconds: 1 } });
    expect(routePolicy(config, "orders")).toEqual(rateLimitPolicies.orders);
    // A mount's own policy sits between the defaults and RATE_LIMITS.
    const mount = { user: { limit: 7, periodSeconds: 7 }, ip: { limit: 9, periodSeconds: 9 } };
    expect(routePolicy(config, "holds", mount)).toEqual({ user: { limit: 2, periodSeconds: 1 } });
    expect(routePolicy(parseRateLimits(""), "holds", mount)).toEqual(mount);
  });

  it("fails loudly on a malformed value, naming what is wrong", () => {
    const bad = [
      ["{holds:", /neither/],
      ["true", /not valid/],
      ['{"hold":{}}', /hold/],
      ['{"holds":{"user":{"limit":0,"periodSeconds":60}}}', /holds\.user: limit must be/],
      ['{"holds":{"user":{"limit":5,"periodSeconds":60,"burts":2}}}', /burts/],
      ['{"holds":{"user":{"limit":5}}}', /periodSeconds/],
      ['{"store":"redis"}', /store/],
      ['{"holds":{"user":true}}', /holds\.user: expected a policy/],
    ] as const;
    for (const [value, message] of bad) {
      expect(() => parseRateLimits(value), value).toThrow(RateLimitConfigError);
      expect(() => parseRateLimits(value), value).toThrow(message);
    }
  });

  it("memoizes the parsed value and keeps failing on a malformed one", () => {
    const value = '{"queue":{"ip":false}}';
    expect(rateLimitConfig(value)).toBe(rateLimitConfig(value));
    expect(() => rateLimitConfig("{nope")).toThrow(RateLimitConfigError);
    expect(() => rateLimitConfig("{nope")).toThrow(RateLimitConfigError);
    expect(rateLimitConfig("").enabled).toBe(true);
  });

  it("has valid defaults for every route", () => {
    for (const p of Object.values(rateLimitPolicies))
      for (const dim of [p.user, p.ip]) expect(() => gcra(dim as RateLimitPolicy)).not.toThrow();
  });
});

describe("headers (draft-ietf-httpapi-ratelimit-headers-11)", () => {
  // sf-list of items: "name";key=int(;key=int)*
  const SF_ITEM = /^"[^"\\]*";[a-z][a-z0-9_.*-]*=\d+(;[a-z][a-z0-9_.*-]*=\d+)*$/;

  it("formats RateLimit-Policy and RateLimit items as structured fields", () => {
    expect(rateLimitPolicyItem("holds-user", { limit: 20, periodSeconds: 60, burst: 5 })).toBe('"holds-user";q=20;w=60');
    const d = run({ limit: 6, periodSeconds: 60, burst: 3 }, [{ at: 0 }])[0] as RateLimitDecision;
    expect(rateLimitItem("holds-user", d)).toBe('"holds-user";r=2;t=10');
    expect(rateLimitItem("x", { allowed: false, remaining: 0, resetSeconds: 1.2, retryAfterSeconds: 0.2, windowSeconds: 0.2 })).toBe(
      '"x";r=0;t=1',
    );
    expect(rateLimitPolicyItem("holds-ip", rateLimitPolicies.holds.ip as RateLimitPolicy)).toMatch(SF_ITEM);
  });

  it("escapes names and refuses what no sf-string can carry", () => {
    expect(sfString('a"b\\c')).toBe('"a\\"b\\\\c"');
    expect(() => sfString("naïve")).toThrow(RangeError);
  });
});

describe("keys", () => {
  it("spreads keys over every Limiter bucket, the same way every time", () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 50_000; i++) {
      const name = limiterObjectName(`holds:user:u${i}`);
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    expect(counts.size).toBe(LIMITER_BUCKETS);
    const expected = 50_000 / LIMITER_BUCKETS;
    for (const n of counts.values()) expect(Math.abs(n - expected)).toBeLessThan(expected * 0.6);
    expect(limiterObjectName("holds:user:u1")).toBe(limiterObjectName("holds:user:u1"));
    expect(limiterObjectName("k", 8)).toMatch(/^rl:[0-7]$/);
  });

  it("keys IPv4 by address and IPv6 by /64", () => {
    expect(clientIpKey("203.0.113.7")).toBe("203.0.113.7");
    const a = clientIpKey("2001:DB8:0:1:aaaa:bbbb:cccc:dddd");
    expect(a).toBe("2001:db8:0:1::/64");
    expect(clientIpKey("2001:db8::1:1:2")).toBe(clientIpKey("2001:0db8:0000:0000:0000:1:1:2"));
    expect(clientIpKey("2001:db8:0:1::5")).toBe(a);
    expect(clientIpKey("2001:db8:0:2::5")).not.toBe(a);
    expect(clientIpKey("::1")).toBe("0:0:0:0::/64");
    expect(clientIpKey("local")).toBe("local");
  });
});

describe("rateVerdict / blockedVerdict (the middleware's decision, pure)", () => {
  const policy = { limit: 2, periodSeconds: 10 };
  const checks = [
    { key: "holds:user:a", name: "holds-user", policy },
    { key: "holds:ip:1", name: "holds-ip", policy },
  ];
  const allowed = { allowed: true, remaining: 1, resetSeconds: 5, retryAfterSeconds: 0, windowSeconds: 5 };
  const refused = { allowed: false, remaining: 0, resetSeconds: 10, retryAfterSeconds: 4, windowSeconds: 5 };
  const ok = <T>(value: T): PromiseSettledResult<T> => ({ status: "fulfilled", value });
  const failed: PromiseSettledResult<never> = { status: "rejected", reason: new Error("store down") };

  it("allows when every check allows, with an item per check", () => {
    const v = rateVerdict(checks, [ok(allowed), ok(allowed)], 1_000);
    expect(v.kind).toBe("allowed");
    expect(v.items).toHaveLength(2);
  });

  it("refuses when one check refuses, even if the other failed, and names the key to block until its retry time", () => {
    const v = rateVerdict(checks, [ok(refused), failed], 1_000);
    expect(v).toMatchObject({ kind: "refused", retryAfterSeconds: 4, block: [{ key: "holds:user:a", until: 5_000 }] });
    expect(v.items).toHaveLength(1);
  });

  it("fails (for the route's failure policy) when a call failed and none refused", () => {
    const v = rateVerdict(checks, [ok(allowed), failed], 1_000);
    expect(v).toMatchObject({ kind: "failed", errors: ["Error: store down"] });
    expect(v.items).toHaveLength(1);
  });

  it("refuses from memory with the longest remaining wait of the blocked keys, or not at all", () => {
    expect(blockedVerdict(checks, () => 0)).toBeNull();
    const v = blockedVerdict(checks, (key) => (key === "holds:ip:1" ? 2_500 : 1_000));
    expect(v?.retryAfterSeconds).toBe(2.5);
    expect(v?.items).toHaveLength(2);
  });
});

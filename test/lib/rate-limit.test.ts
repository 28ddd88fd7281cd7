import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_RATE_LIMITS, gcra, limitHeader, parseRateLimits, policyHeader } from "../../lib/rate-limit";

describe("GCRA", () => {
  it("allows a burst, then one request per interval", () => {
    const g = gcra({ limit: 6, periodSeconds: 60, burst: 3 }); // one per 10 s, 3 at once
    let tat: number | undefined;
    const at = (now: number) => {
      const r = g.check(tat, now);
      if (r.decision.allowed) tat = r.tat;
      return r.decision;
    };
    expect([at(0), at(0), at(0)].map((d) => d.allowed)).toEqual([true, true, true]);
    const refused = at(0);
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfterSeconds: 10 });
    expect(at(9_999).allowed).toBe(false);
    expect(at(10_000).allowed).toBe(true);
    expect(at(10_000).allowed).toBe(false);
  });

  it("reports remaining requests", () => {
    const g = gcra({ limit: 10, periodSeconds: 10 });
    const first = g.check(undefined, 0);
    expect(first.decision).toMatchObject({ allowed: true, remaining: 9 });
  });

  it("never admits more than burst + elapsed/interval in any window (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 10 }),
        fc.array(fc.integer({ min: 0, max: 120_000 }), { minLength: 1, maxLength: 300 }),
        (limit, periodSeconds, burst, times) => {
          const g = gcra({ limit, periodSeconds, burst });
          const interval = (periodSeconds * 1000) / limit;
          const sorted = [...times].sort((a, b) => a - b);
          let tat: number | undefined;
          const allowed: number[] = [];
          for (const t of sorted) {
            const r = g.check(tat, t);
            if (r.decision.allowed) {
              tat = r.tat;
              allowed.push(t);
            }
          }
          for (let i = 0; i < allowed.length; i++)
            for (let j = i; j < allowed.length; j++) {
              const span = (allowed[j] as number) - (allowed[i] as number);
              expect(j - i + 1).toBeLessThanOrEqual(burst + Math.floor(span / interval) + 1);
            }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("RATE_LIMITS", () => {
  it("uses defaults when empty, none when off, and merges JSON overrides", () => {
    expect(parseRateLimits("")).toBe(DEFAULT_RATE_LIMITS);
    expect(parseRateLimits("off")).toBeNull();
    const custom = parseRateLimits('{"holds":{"user":{"limit":2,"periodSeconds":1}}}');
    expect(custom?.holds).toEqual({ user: { limit: 2, periodSeconds: 1 } });
    expect(custom?.orders).toBe(DEFAULT_RATE_LIMITS.orders);
  });

  it("refuses malformed configuration loudly", () => {
    expect(() => parseRateLimits("{holds:")).toThrow(/not JSON/);
    expect(() => parseRateLimits('{"holds":{"user":{"limit":0,"periodSeconds":1}}}')).toThrow(/not valid/);
    expect(() => parseRateLimits('{"bogus":{}}')).toThrow(/not valid/);
  });

  it("formats the IETF draft headers", () => {
    expect(policyHeader("holds-user", { limit: 20, periodSeconds: 60 })).toBe('"holds-user";q=20;w=60');
    expect(limitHeader("holds-user", { allowed: true, remaining: 3, resetSeconds: 12, retryAfterSeconds: 0 })).toBe(
      '"holds-user";r=3;t=12',
    );
  });
});

import { z } from "zod";

/**
 * Rate limiting with GCRA (the generic cell rate algorithm): one timestamp per key — the theoretical
 * arrival time (TAT) — instead of a counter and a window, so bursts and steady rates are both exact.
 * The algorithm is a plain value built by {@link gcra}, closing over its policy (no I/O): the Limiter DO
 * stores the TATs, the edge decides nothing on its own except remembering keys it saw blocked.
 */

/** One limit: `limit` requests per `periodSeconds`, of which up to `burst` may come at once. */
export interface RateLimitPolicy {
  limit: number;
  periodSeconds: number;
  /** Requests allowed back to back (default: `limit`). */
  burst?: number;
}

/** The outcome of one check. */
export interface RateLimitDecision {
  allowed: boolean;
  /** Requests still allowed right now. */
  remaining: number;
  /** Seconds until the key is back to its full burst. */
  resetSeconds: number;
  /** When refused: seconds until one request would be allowed. */
  retryAfterSeconds: number;
}

/** A GCRA limiter for one policy: `check(tat, now)` → decision and the new TAT to store. */
export function gcra(policy: RateLimitPolicy) {
  const interval = (policy.periodSeconds * 1000) / policy.limit; // ms between requests at the steady rate
  const tolerance = interval * (policy.burst ?? policy.limit); // how far ahead of now the TAT may run
  return {
    policy,
    /** Decides one request of `cost` (default 1) for a key whose stored TAT is `tat` (undefined: new key). */
    check(tat: number | undefined, now: number, cost = 1): { decision: RateLimitDecision; tat: number } {
      const base = Math.max(tat ?? now, now);
      const next = base + interval * cost;
      if (next - now > tolerance) {
        const retry = (next - now - tolerance) / 1000;
        return {
          decision: {
            allowed: false,
            remaining: 0,
            resetSeconds: Math.ceil((base - now) / 1000),
            retryAfterSeconds: Math.max(1, Math.ceil(retry)),
          },
          tat: base,
        };
      }
      return {
        decision: {
          allowed: true,
          remaining: Math.max(0, Math.floor((tolerance - (next - now)) / interval)),
          resetSeconds: Math.ceil((next - now) / 1000),
          retryAfterSeconds: 0,
        },
        tat: next,
      };
    },
  };
}

const policySchema = z.strictObject({
  limit: z.number().int().min(1).max(1_000_000),
  periodSeconds: z.number().int().min(1).max(86_400),
  burst: z.number().int().min(1).max(1_000_000).optional(),
});

/** Limits of one route: per buyer and per client IP. */
export interface RoutePolicy {
  user?: RateLimitPolicy;
  ip?: RateLimitPolicy;
}

/** The routes that are rate limited, with their defaults. */
export const DEFAULT_RATE_LIMITS: Record<"holds" | "orders" | "queue", RoutePolicy> = {
  // A buyer holds a few times while choosing seats; an IP may front many buyers (NAT, offices).
  holds: { user: { limit: 20, periodSeconds: 60, burst: 5 }, ip: { limit: 600, periodSeconds: 60, burst: 100 } },
  orders: { user: { limit: 10, periodSeconds: 60, burst: 3 }, ip: { limit: 300, periodSeconds: 60, burst: 50 } },
  // Joining once and polling every few seconds stays far below this.
  queue: { user: { limit: 60, periodSeconds: 60, burst: 10 }, ip: { limit: 3_000, periodSeconds: 60, burst: 300 } },
};

/** Route name of a rate-limited route group. */
export type RateLimitedRoute = keyof typeof DEFAULT_RATE_LIMITS;

const overridesSchema = z.union([
  z.literal("off"),
  z.partialRecord(z.enum(["holds", "orders", "queue"]), z.strictObject({ user: policySchema.optional(), ip: policySchema.optional() })),
]);

/**
 * Parses `RATE_LIMITS`: empty → defaults; `off` → no limits (benchmarks of the layers behind); JSON →
 * per-route overrides of the defaults. A malformed value throws: a typo must not silently disable limits.
 */
export function parseRateLimits(value: string | undefined): Record<RateLimitedRoute, RoutePolicy> | null {
  if (!value || !value.trim()) return DEFAULT_RATE_LIMITS;
  if (value.trim() === "off") return null;
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    throw new Error(`RATE_LIMITS is not JSON: ${value.slice(0, 80)}`);
  }
  const parsed = overridesSchema.safeParse(json);
  if (!parsed.success)
    throw new Error(`RATE_LIMITS is not valid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  if (parsed.data === "off") return null;
  return { ...DEFAULT_RATE_LIMITS, ...parsed.data };
}

/** `RateLimit-Policy` item (draft-ietf-httpapi-ratelimit-headers-09, structured fields). */
export const policyHeader = (name: string, p: RateLimitPolicy): string => `"${name}";q=${p.limit};w=${p.periodSeconds}`;
/** `RateLimit` item (same draft): remaining quota and seconds until reset. */
export const limitHeader = (name: string, d: RateLimitDecision): string => `"${name}";r=${d.remaining};t=${d.resetSeconds}`;

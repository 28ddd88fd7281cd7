import type { Context, MiddlewareHandler } from "hono";
import { LIMITER_BUCKETS } from "../../durable-objects/limiter";
import { metrics } from "../../lib/metrics";
import { ApiError } from "../../lib/problem";
import {
  limitHeader,
  parseRateLimits,
  policyHeader,
  type RateLimitDecision,
  type RateLimitedRoute,
  type RateLimitPolicy,
} from "../../lib/rate-limit";
import { hash32 } from "../../lib/signing";
import type { AppEnv } from "../types";

/** Options of {@link rateLimit}. */
export interface RateLimitOptions {
  /** Which route group's policy applies (`RATE_LIMITS` can override it). */
  route: RateLimitedRoute;
  /**
   * What happens when the Limiter DO cannot be asked. `open` (default): the request goes through and the
   * failure is logged and counted (`breakwater_ratelimit_errors_total`) — a limiter outage must not take
   * sales down. `closed`: 503 `overloaded`.
   */
  failure?: "open" | "closed";
}

/** Keys this isolate saw refused, until they may try again: a blocked client costs no DO call. */
const blocked = new Map<string, { until: number; policy: RateLimitPolicy; name: string }>();
const BLOCKED_MAX = 50_000;

/** Forgets the isolate's memory of blocked keys (tests). */
export const forgetBlockedKeys = (): void => blocked.clear();

let parsedFor: string | undefined;
let parsed: ReturnType<typeof parseRateLimits> = null;
function policies(value: string | undefined) {
  if (parsedFor !== value || parsed === null) {
    parsed = parseRateLimits(value);
    parsedFor = value;
  }
  return parsed;
}

const clientIp = (c: Context<AppEnv>): string =>
  c.req.header("CF-Connecting-IP") ?? c.req.header("X-Forwarded-For")?.split(",")[0]?.trim() ?? "local";

/**
 * Token-bucket-equivalent limits (GCRA) per buyer and per client IP, kept in Limiter DOs spread over
 * {@link LIMITER_BUCKETS} objects. Runs after `auth()`. Sets `RateLimit-Policy` and `RateLimit` on every
 * answer; refuses with 429 `rate_limited`, `Retry-After` and the same headers.
 */
export const rateLimit = (opts: RateLimitOptions): MiddlewareHandler<AppEnv> => {
  const failure = opts.failure ?? "open";
  return async function rateLimit(c, next) {
    const all = policies(c.env.RATE_LIMITS);
    const route = all?.[opts.route];
    if (!route) return next();
    const checks: { key: string; name: string; policy: RateLimitPolicy }[] = [];
    const user = c.get("principal")?.sub;
    if (route.user && user) checks.push({ key: `${opts.route}:u:${user}`, name: `${opts.route}-user`, policy: route.user });
    if (route.ip) checks.push({ key: `${opts.route}:ip:${clientIp(c)}`, name: `${opts.route}-ip`, policy: route.ip });
    const now = Date.now();

    for (const chk of checks) {
      const b = blocked.get(chk.key);
      if (b && b.until > now) {
        metrics.inc("breakwater_ratelimit_decisions_total", { route: opts.route, result: "blocked_cached" }, 1, "Rate-limit decisions");
        const retry = Math.ceil((b.until - now) / 1000);
        throw new ApiError("rate_limited", `Too many requests; retry in ${retry} s.`, {
          retryAfterSeconds: retry,
          headers: {
            "RateLimit-Policy": policyHeader(b.name, b.policy),
            RateLimit: limitHeader(b.name, { allowed: false, remaining: 0, resetSeconds: retry, retryAfterSeconds: retry }),
          },
        });
      }
      if (b) blocked.delete(chk.key);
    }

    let decisions: RateLimitDecision[];
    try {
      decisions = await Promise.all(
        checks.map((chk) => {
          metrics.inc("breakwater_ratelimit_do_calls_total", { route: opts.route }, 1, "Calls to Limiter DOs");
          const ns = c.env.LIMITER;
          return ns.get(ns.idFromName(`rl:${hash32(chk.key) % LIMITER_BUCKETS}`)).check(chk.key, chk.policy);
        }),
      );
    } catch (err) {
      metrics.inc("breakwater_ratelimit_errors_total", { route: opts.route }, 1, "Limiter DO calls that failed");
      console.error(
        JSON.stringify({ level: "warn", msg: "rate limiter unavailable", route: opts.route, policy: failure, error: String(err) }),
      );
      if (failure === "closed") throw new ApiError("overloaded", "Rate limiting is unavailable; retry shortly.", { retryAfterSeconds: 1 });
      return next();
    }

    const headers = {
      "RateLimit-Policy": checks.map((chk) => policyHeader(chk.name, chk.policy)).join(", "),
      RateLimit: checks.map((chk, i) => limitHeader(chk.name, decisions[i] as RateLimitDecision)).join(", "),
    };
    const refused = decisions.findIndex((d) => !d.allowed);
    if (refused >= 0) {
      const chk = checks[refused] as (typeof checks)[number];
      const d = decisions[refused] as RateLimitDecision;
      if (blocked.size >= BLOCKED_MAX) blocked.clear();
      blocked.set(chk.key, { until: now + d.retryAfterSeconds * 1000, policy: chk.policy, name: chk.name });
      metrics.inc("breakwater_ratelimit_decisions_total", { route: opts.route, result: "refused" }, 1, "Rate-limit decisions");
      throw new ApiError("rate_limited", `Too many requests; retry in ${d.retryAfterSeconds} s.`, {
        retryAfterSeconds: d.retryAfterSeconds,
        headers,
      });
    }
    metrics.inc("breakwater_ratelimit_decisions_total", { route: opts.route, result: "allowed" }, 1, "Rate-limit decisions");
    await next();
    for (const [k, v] of Object.entries(headers)) c.res.headers.set(k, v);
  };
};

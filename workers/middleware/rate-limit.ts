import type { Context, MiddlewareHandler } from "hono";
import { config as appConfig } from "../../lib/config";
import { metric } from "../../lib/metric-catalog";
import { ApiError } from "../../lib/problem";
import {
  blockedVerdict,
  clientIpKey,
  LIMITER_BUCKETS,
  limiterStore,
  type RateCheck,
  type RateLimitConfig,
  RateLimitConfigError,
  type RateLimitedRoute,
  type RateLimitPolicy,
  type RateLimitStore,
  type RateLimitStoreKind,
  type RoutePolicy,
  rateLimitConfig,
  rateLimitPolicies,
  rateLimitPolicyItem,
  rateVerdict,
  routePolicy,
} from "../../lib/rate-limit";
import { type UpstashEnv, upstashStoreFromEnv } from "../../lib/rate-limit-upstash";
import { withTimeout } from "../../lib/timeout";
import type { AppEnv } from "../types";

/**
 * Keys this isolate saw refused, until their retry time: while a key is in here its requests are refused
 * at once, with no store call. Bounded: expired entries go first, then the oldest.
 */
export class BlockedKeys {
  private readonly until = new Map<string, number>();

  /** @param max most keys remembered (a flood of distinct keys must not grow the isolate's memory). */
  constructor(readonly max = 10_000) {}

  /** Milliseconds `key` stays blocked at `now` (0: not blocked). */
  remaining(key: string, now: number): number {
    const until = this.until.get(key);
    if (until === undefined) return 0;
    if (until > now) return until - now;
    this.until.delete(key);
    return 0;
  }

  /** Remembers `key` as blocked until `until` (ms). */
  block(key: string, until: number, now: number): void {
    this.until.delete(key);
    if (this.until.size >= this.max) {
      for (const [k, u] of this.until) if (u <= now) this.until.delete(k);
      for (const k of this.until.keys()) {
        if (this.until.size < this.max) break;
        this.until.delete(k);
      }
    }
    this.until.set(key, until);
  }

  /** Keys remembered (expired ones included until they are looked up or evicted). */
  get size(): number {
    return this.until.size;
  }

  /** Forgets every key. */
  clear(): void {
    this.until.clear();
  }
}

/** The isolate's memory of blocked keys, shared by every `rateLimit()` mount (keys carry the route). */
export const blockedKeys = new BlockedKeys();

/** Options of {@link rateLimit}. */
export interface RateLimitOptions {
  /** The route group: picks the policy (`rateLimitPolicies[route]`, then `RATE_LIMITS`) and labels metrics. */
  route: RateLimitedRoute;
  /** Replaces the code's default policy of `route` for this mount; `RATE_LIMITS` still overrides it. */
  policy?: RoutePolicy;
  /**
   * Failure policy, when the store (Limiter DO, or Upstash) cannot answer within `timeoutMs`:
   * - `"open"` (default): the request goes through, a warning line is logged and
   *   `breakwater_ratelimit_errors_total` counts it — a limiter outage must not stop a sale;
   * - `"closed"`: 503 `overloaded` with `Retry-After: 1` — for routes where abuse costs more than refusals.
   * A refusal from a store that did answer always wins. A malformed `RATE_LIMITS` is not a store failure:
   * it fails every request loudly (500, logged) under both policies.
   */
  failure?: "open" | "closed";
  /** How long a store call may take before it counts as failed (default 1000 ms). */
  timeoutMs?: number;
  /** The store; by default from `RATE_LIMITS.store`: Limiter DOs over `LIMITER_BUCKETS`, or Upstash. */
  store?: (env: Env) => RateLimitStore;
  /** Memory of blocked keys (default: the isolate's {@link blockedKeys}). */
  blocked?: BlockedKeys;
  /**
   * The client address: `CF-Connecting-IP` by default (set by Cloudflare, not by clients). Without it
   * (local runs) every request shares the address `local`. Return undefined to skip the IP limit.
   */
  clientIp?: (c: Context<AppEnv>) => string | undefined;
  /** Clock of the blocked-key memory, in ms. */
  now?: () => number;
  /** Where the warning line of a store failure goes (default `console.warn`). */
  log?: (line: string) => void;
}

interface Resolved {
  user?: { name: string; policy: RateLimitPolicy };
  ip?: { name: string; policy: RateLimitPolicy };
  /** The `RateLimit-Policy` value: every policy of the route, also on refusals. */
  policyHeader: string;
}

const defaultClientIp = (c: Context<AppEnv>): string => c.req.header("CF-Connecting-IP") ?? "local";

/** The default store of `kind` for `env`, built once per binding / credentials. */
function storeFactory(): (env: Env, kind: RateLimitStoreKind) => RateLimitStore {
  let cache: { kind: RateLimitStoreKind; from: unknown; store: RateLimitStore } | undefined;
  return (env, kind) => {
    const creds = env as Env & UpstashEnv;
    const from = kind === "upstash" ? `${creds.UPSTASH_REDIS_REST_URL}\n${creds.UPSTASH_REDIS_REST_TOKEN}` : env.LIMITER;
    if (cache?.kind === kind && cache.from === from) return cache.store;
    let store: RateLimitStore | null;
    if (kind === "upstash") {
      store = upstashStoreFromEnv(creds);
      if (!store) throw new RateLimitConfigError("RATE_LIMITS selects the upstash store, but UPSTASH_REDIS_REST_URL / _TOKEN are not set.");
    } else store = limiterStore(env.LIMITER, LIMITER_BUCKETS);
    cache = { kind, from, store };
    return store;
  };
}

/**
 * Rate limits per buyer and per client IP (GCRA; see `lib/rate-limit.ts`). Mount after `auth()` (the
 * buyer key is `principal.sub`; without a principal only the IP limit applies):
 *
 * ```ts
 * holds.post("/v1/events/:id/holds", auth("buyer"), rateLimit({ route: "holds" }), idempotency(), …)
 * ```
 *
 * Refuses with 429 `rate_limited`, `Retry-After` and the draft-11 `RateLimit-Policy` / `RateLimit`
 * headers, which allowed answers carry too. The buyer and IP checks run in parallel, so a request refused
 * by one still spends its unit of the other. A key seen refused is remembered in the isolate until its
 * retry time, so a blocked client costs no store call. Metrics: `breakwater_ratelimit_decisions_total`
 * (`result`: allowed, refused, blocked_cached, failed_open, failed_closed),
 * `breakwater_ratelimit_do_calls_total`, `breakwater_ratelimit_errors_total`.
 */
export const rateLimit = (opts: RateLimitOptions): MiddlewareHandler<AppEnv> => {
  const route = opts.route;
  const failure = opts.failure ?? "open";
  const timeoutMs = opts.timeoutMs ?? 1_000;
  const blocked = opts.blocked ?? blockedKeys;
  const clientIp = opts.clientIp ?? defaultClientIp;
  const clock = opts.now ?? Date.now;
  const log = opts.log ?? ((line: string) => console.warn(line));
  const defaultStore = storeFactory();
  const base = opts.policy ?? rateLimitPolicies[route];
  const names = { user: `${route}-user`, ip: `${route}-ip` };
  let resolvedFor: RateLimitConfig | undefined;
  let resolved: Resolved = { policyHeader: "" };

  /** The route's policies and header under `config`, recomputed only when the config changes. */
  const resolve = (config: RateLimitConfig): Resolved => {
    if (config !== resolvedFor) {
      const p = routePolicy(config, route, base);
      const next: Resolved = { policyHeader: "" };
      if (p.user) next.user = { name: names.user, policy: p.user };
      if (p.ip) next.ip = { name: names.ip, policy: p.ip };
      next.policyHeader = [next.user, next.ip].flatMap((x) => (x ? [rateLimitPolicyItem(x.name, x.policy)] : [])).join(", ");
      resolved = next;
      resolvedFor = config;
    }
    return resolved;
  };

  const refuse = (policyHeader: string, items: string[], retryAfterSeconds: number): ApiError => {
    const headers: Record<string, string> = { "RateLimit-Policy": policyHeader };
    if (items.length) headers.RateLimit = items.join(", ");
    return new ApiError("rate_limited", `Too many requests; retry in ${Math.max(1, Math.ceil(retryAfterSeconds))} s.`, {
      retryAfterSeconds,
      headers,
    });
  };

  /** The checks of this request: the buyer's and the address's keys of the route's policies. */
  const checksOf = (c: Context<AppEnv>, r: Resolved): RateCheck[] => {
    const checks: RateCheck[] = [];
    const sub = c.get("principal")?.sub;
    if (r.user && sub) checks.push({ key: `${route}:user:${sub}`, ...r.user });
    const ip = r.ip ? clientIp(c) : undefined;
    if (r.ip && ip !== undefined) checks.push({ key: `${route}:ip:${clientIpKey(ip)}`, ...r.ip });
    return checks;
  };

  /** Asks the store about every check at once; a call that fails or takes longer than `timeoutMs` is a failed answer. */
  const ask = (store: RateLimitStore, checks: RateCheck[]) =>
    Promise.allSettled(
      // An async wrapper, so a store that throws synchronously is a failed call, not an escaped error.
      checks.map(async (chk) =>
        withTimeout(
          timeoutMs,
          () => store.check(chk.key, chk.policy),
          () => new Error(`rate-limit store timed out after ${timeoutMs} ms`),
        ),
      ),
    );

  return async function rateLimit(c, next) {
    const config = rateLimitConfig(appConfig(c.env).RATE_LIMITS);
    if (!config.enabled) return next();
    const r = resolve(config);
    const checks = checksOf(c, r);
    if (checks.length === 0) return next();

    const now = clock();
    const cached = blockedVerdict(checks, (key) => blocked.remaining(key, now));
    if (cached) {
      metric.ratelimitDecisions.inc({ route, result: "blocked_cached" });
      throw refuse(r.policyHeader, cached.items, cached.retryAfterSeconds);
    }

    const store = opts.store ? opts.store(c.env) : defaultStore(c.env, config.store);
    metric.ratelimitDoCalls.inc({ route }, checks.length);
    const verdict = rateVerdict(checks, await ask(store, checks), now);
    if (verdict.kind === "refused") {
      for (const b of verdict.block) blocked.block(b.key, b.until, now);
      metric.ratelimitDecisions.inc({ route, result: "refused" });
      throw refuse(r.policyHeader, verdict.items, verdict.retryAfterSeconds);
    }
    if (verdict.kind === "failed") {
      metric.ratelimitErrors.inc({ route }, verdict.errors.length);
      metric.ratelimitDecisions.inc({ route, result: failure === "open" ? "failed_open" : "failed_closed" });
      log(
        JSON.stringify({
          level: "warn",
          msg: "rate limiter unavailable",
          route,
          store: store.kind,
          failure,
          requestId: c.get("requestId"),
          errors: verdict.errors,
        }),
      );
      if (failure === "closed") throw new ApiError("overloaded", "Rate limiting is unavailable; retry shortly.", { retryAfterSeconds: 1 });
    } else metric.ratelimitDecisions.inc({ route, result: "allowed" });

    await next();
    c.res.headers.set("RateLimit-Policy", r.policyHeader);
    if (verdict.items.length) c.res.headers.set("RateLimit", verdict.items.join(", "));
  };
};

import { z } from "zod";
import { hash32 } from "./signing";

/**
 * Rate limiting with GCRA (the generic cell rate algorithm, the token bucket as one timestamp): per key
 * the only state is the theoretical arrival time (TAT) of the next request at the steady rate. A request
 * is allowed when the TAT is not further ahead of now than the burst allows; allowing it pushes the TAT
 * one emission interval further. No counters, no windows, no background refill.
 *
 * The algorithm is a plain value built by {@link gcra}, closing over its policy; it does no I/O and is
 * deterministic given `now`. Stores (the Limiter DO, the optional Upstash tier) keep the TATs; the edge
 * middleware decides nothing by itself except remembering keys it saw refused.
 *
 * Time inside is integer microseconds, so every comparison is exact (no float drift at window edges);
 * the emission interval is rounded up to a whole microsecond, which can only make a limit stricter.
 */

/**
 * One limit: on average `limit` requests per `periodSeconds`, and at most `burst` back to back (a token
 * bucket of `burst` tokens refilled at `limit / periodSeconds`). In any span of `s` seconds a key gets at
 * most `burst + floor(s * limit / periodSeconds)` requests, so any window of `periodSeconds` admits fewer
 * than `limit + burst`.
 */
export interface RateLimitPolicy {
  /** Requests per period at the steady rate (1 to 1,000,000). */
  limit: number;
  /** The period in whole seconds (1 to 86,400); also the `w` of `RateLimit-Policy`. */
  periodSeconds: number;
  /** Requests allowed back to back from a rested key (default `limit`). */
  burst?: number;
}

/** The outcome of one check. Times are seconds with microsecond precision; headers round them up. */
export interface RateLimitDecision {
  allowed: boolean;
  /** Requests that would be allowed right now, after this one. */
  remaining: number;
  /** Seconds until the key is fully rested (back to `burst` remaining). */
  resetSeconds: number;
  /** Refused: seconds until this request would be allowed. Allowed: 0. */
  retryAfterSeconds: number;
  /** Seconds until `remaining` grows by one (0 when rested): within it, no more than `remaining` pass. */
  windowSeconds: number;
}

/** One step of {@link Gcra.check}: the decision and the TAT to store (µs; undefined: no state). */
interface GcraStep {
  decision: RateLimitDecision;
  tat: number | undefined;
  /** Whether `tat` differs from the one passed in (a store writes only then). */
  changed: boolean;
}

/** A GCRA limiter for one policy, built by {@link gcra}. */
export interface Gcra {
  readonly kind: "gcra";
  /** The policy with its defaults filled in. */
  readonly policy: Required<RateLimitPolicy>;
  /** Emission interval T in µs (time between requests at the steady rate). */
  readonly intervalUs: number;
  /** Burst tolerance τ in µs: how far ahead of now the TAT may be and still admit one request. */
  readonly toleranceUs: number;
  /**
   * Decides `cost` requests (default 1; 0 only looks) at `nowMs` for a key whose stored TAT is `tat`
   * (µs; undefined for a key never seen or purged). Refusals leave the state unchanged.
   */
  check(tat: number | undefined, nowMs: number, cost?: number): GcraStep;
}

const US_PER_MS = 1_000;
const US_PER_S = 1_000_000;
/** Longest burst tolerance accepted (µs, ~31 years): keeps TAT arithmetic inside safe integers. */
const MAX_TOLERANCE_US = 1e15;

/** Why a policy is unusable, or null when it is fine. */
function policyProblem(p: RateLimitPolicy): string | null {
  if (!Number.isInteger(p.limit) || p.limit < 1 || p.limit > 1_000_000) return "limit must be an integer from 1 to 1000000";
  if (!Number.isInteger(p.periodSeconds) || p.periodSeconds < 1 || p.periodSeconds > 86_400)
    return "periodSeconds must be an integer from 1 to 86400";
  const burst = p.burst ?? p.limit;
  if (!Number.isInteger(burst) || burst < 1 || burst > 1_000_000) return "burst must be an integer from 1 to 1000000";
  if (Math.ceil((p.periodSeconds * US_PER_S) / p.limit) * burst > MAX_TOLERANCE_US) return "burst × period / limit is too long";
  return null;
}

/** Builds the GCRA limiter of `policy`. Throws a RangeError for an unusable policy. */
export function gcra(policy: RateLimitPolicy): Gcra {
  const problem = policyProblem(policy);
  if (problem) throw new RangeError(`rate-limit policy: ${problem}`);
  const resolved: Required<RateLimitPolicy> = {
    limit: policy.limit,
    periodSeconds: policy.periodSeconds,
    burst: policy.burst ?? policy.limit,
  };
  const T = Math.ceil((resolved.periodSeconds * US_PER_S) / resolved.limit);
  const tau = (resolved.burst - 1) * T;
  const capacity = resolved.burst;
  return {
    kind: "gcra",
    policy: resolved,
    intervalUs: T,
    toleranceUs: tau,
    check(tat, nowMs, cost = 1) {
      if (!Number.isFinite(nowMs)) throw new RangeError("now must be a finite number of ms");
      if (!Number.isInteger(cost) || cost < 0 || cost > capacity) throw new RangeError(`cost must be an integer from 0 to ${capacity}`);
      const now = Math.round(nowMs * US_PER_MS);
      const base = tat === undefined || tat < now ? now : tat;
      const allowAt = base + cost * T - tau - T; // the earliest now at which this request conforms
      const allowed = now >= allowAt;
      const after = allowed ? base + cost * T : base;
      const slack = now + tau + T - after; // credit left, in µs (capacity × T when rested)
      const remaining = Math.max(0, Math.min(capacity, Math.floor(slack / T)));
      const rested = after <= now;
      const decision: RateLimitDecision = {
        allowed,
        remaining,
        resetSeconds: rested ? 0 : (after - now) / US_PER_S,
        retryAfterSeconds: allowed ? 0 : (allowAt - now) / US_PER_S,
        windowSeconds: rested || remaining >= capacity ? 0 : ((remaining + 1) * T - slack) / US_PER_S,
      };
      const changed = allowed && cost > 0;
      return { decision, tat: changed ? after : tat, changed };
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Policies per route and the RATE_LIMITS var

/** The route groups that are rate limited. */
const RATE_LIMITED_ROUTES = ["holds", "orders", "queue", "reads"] as const;
/** Name of a rate-limited route group: picks its policy and labels its metrics. */
export type RateLimitedRoute = (typeof RATE_LIMITED_ROUTES)[number];

/** The limits of one route group: per buyer (`principal.sub`) and per client IP. An absent one is off. */
export interface RoutePolicy {
  user?: RateLimitPolicy;
  ip?: RateLimitPolicy;
}

/**
 * Default policies, per route group. Mount with `rateLimit({ route: "holds" })`; `RATE_LIMITS` overrides
 * them per route and per dimension without a deploy of code.
 */
export const rateLimitPolicies: Readonly<Record<RateLimitedRoute, Readonly<RoutePolicy>>> = {
  // A buyer holds a few times while choosing seats; an address may front many buyers (NAT, venues, offices).
  holds: { user: { limit: 20, periodSeconds: 60, burst: 5 }, ip: { limit: 600, periodSeconds: 60, burst: 100 } },
  // Checkout retries are rare; a burst of 3 covers a declined card and a second try.
  orders: { user: { limit: 10, periodSeconds: 60, burst: 3 }, ip: { limit: 300, periodSeconds: 60, burst: 50 } },
  // Joining once and polling every few seconds stays far below this.
  queue: { user: { limit: 60, periodSeconds: 60, burst: 10 }, ip: { limit: 3_000, periodSeconds: 60, burst: 300 } },
  // A buyer's reads and releases of their own holds and orders (each costs an Inventory DO call): a page
  // polling a hold every few seconds stays far below this; a scan of crafted ids does not.
  reads: { user: { limit: 120, periodSeconds: 60, burst: 30 }, ip: { limit: 3_000, periodSeconds: 60, burst: 300 } },
};

/** Where the TATs live: Limiter Durable Objects (default) or the optional shared Upstash Redis tier. */
export type RateLimitStoreKind = "durable-object" | "upstash";

/** `RATE_LIMITS` parsed: whether limits apply, the store, and per-route overrides of the code's policies. */
export interface RateLimitConfig {
  enabled: boolean;
  store: RateLimitStoreKind;
  /** Per route and dimension: a replacement policy, or `false` to switch that dimension off. */
  overrides: Partial<Record<RateLimitedRoute, { user?: RateLimitPolicy | false; ip?: RateLimitPolicy | false }>>;
}

/** A malformed `RATE_LIMITS`. Never swallowed: a typo must not silently disable limits. */
export class RateLimitConfigError extends Error {
  override readonly name = "RateLimitConfigError";
}

const policySchema = z
  .strictObject({ limit: z.number(), periodSeconds: z.number(), burst: z.number().optional() })
  .superRefine((p, ctx) => {
    const problem = policyProblem(p);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
const dimensionSchema = z.union([policySchema, z.literal(false)]).optional();
const routeOverrideSchema = z.strictObject({ user: dimensionSchema, ip: dimensionSchema });
const configSchema = z.strictObject({
  store: z.enum(["durable-object", "upstash"]).optional(),
  holds: routeOverrideSchema.optional(),
  orders: routeOverrideSchema.optional(),
  queue: routeOverrideSchema.optional(),
  reads: routeOverrideSchema.optional(),
});

/** Readable issues; for "a policy or false" it reports what is wrong with the policy, not "invalid input". */
function describeIssues(issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[] = []): string[] {
  return issues.flatMap((i) => {
    const path = [...prefix, ...i.path];
    if (i.code === "invalid_union") {
      const isWrongType = (b: z.core.$ZodIssue[]) =>
        b.length === 1 && b[0]?.path.length === 0 && (b[0].code === "invalid_type" || b[0].code === "invalid_value");
      const branch = i.errors.find((b) => !isWrongType(b));
      if (branch) return describeIssues(branch, path);
      return [`${path.map(String).join(".")}: expected a policy {limit, periodSeconds, burst?} or false`];
    }
    return [`${path.map(String).join(".") || "(root)"}: ${i.message}`];
  });
}

/**
 * Parses `RATE_LIMITS`: `""` (or unset) → the defaults in code; `"off"` → no limits (benchmarks of the
 * layers behind); otherwise JSON such as
 * `{"holds":{"user":{"limit":10,"periodSeconds":60,"burst":3},"ip":false},"store":"upstash"}` — routes
 * `holds`, `orders`, `queue`, `reads`; dimensions `user`, `ip` (a policy, or `false` for off); `store`
 * `durable-object` (default) or `upstash`. Anything else throws {@link RateLimitConfigError}.
 */
export function parseRateLimits(value: string | undefined): RateLimitConfig {
  const text = value?.trim() ?? "";
  if (text === "") return { enabled: true, store: "durable-object", overrides: {} };
  if (text === "off") return { enabled: false, store: "durable-object", overrides: {} };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new RateLimitConfigError(`RATE_LIMITS is neither "", "off" nor JSON: ${text.slice(0, 80)}`);
  }
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) throw new RateLimitConfigError(`RATE_LIMITS is not valid: ${describeIssues(parsed.error.issues).join("; ")}`);
  const { store, ...overrides } = parsed.data;
  return { enabled: true, store: store ?? "durable-object", overrides };
}

let parsedFor: string | undefined;
let parsedResult: { config: RateLimitConfig } | { error: RateLimitConfigError } | undefined;

/** {@link parseRateLimits}, memoized on the last value seen (the var is the same on every request). */
export function rateLimitConfig(value: string | undefined): RateLimitConfig {
  if (parsedResult === undefined || parsedFor !== value) {
    try {
      parsedResult = { config: parseRateLimits(value) };
    } catch (err) {
      if (!(err instanceof RateLimitConfigError)) throw err;
      parsedResult = { error: err };
    }
    parsedFor = value;
  }
  if ("error" in parsedResult) throw parsedResult.error;
  return parsedResult.config;
}

/** The effective policy of `route`: `RATE_LIMITS` overrides, over `base` (the code's, by default). */
export function routePolicy(config: RateLimitConfig, route: RateLimitedRoute, base: RoutePolicy = rateLimitPolicies[route]): RoutePolicy {
  const over = config.overrides[route] ?? {};
  const pick = (dim: "user" | "ip"): RateLimitPolicy | undefined => {
    const o = over[dim];
    if (o === false) return undefined;
    return o ?? base[dim];
  };
  const out: RoutePolicy = {};
  const user = pick("user");
  const ip = pick("ip");
  if (user) out.user = user;
  if (ip) out.ip = ip;
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Headers (draft-ietf-httpapi-ratelimit-headers-11, structured-field form)

/** A Structured Field String (RFC 9651 §3.3.3): printable ASCII, `"` and `\` escaped. */
export function sfString(s: string): string {
  if (!/^[\x20-\x7e]*$/.test(s)) throw new RangeError(`not an sf-string: ${JSON.stringify(s)}`);
  return `"${s.replace(/[\\"]/g, "\\$&")}"`;
}

/**
 * One Quota Policy Item of `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-11 §3.1):
 * `"holds-user";q=20;w=60` — `q` the quota per window (the policy's `limit`), `w` the window in seconds.
 * The burst is not a parameter of the draft; `RateLimit`'s `r` shows it as it is used up.
 */
export const rateLimitPolicyItem = (name: string, p: RateLimitPolicy): string => `${sfString(name)};q=${p.limit};w=${p.periodSeconds}`;

/**
 * One Service Limit Item of `RateLimit` (same draft, §4.1): `"holds-user";r=3;t=12` — `r` the quota
 * available now, `t` the effective window: whole seconds within which no more than `r` will pass (for
 * GCRA, until the next unit is earned; 0 when the key is rested).
 */
export const rateLimitItem = (name: string, d: RateLimitDecision): string =>
  `${sfString(name)};r=${d.remaining};t=${Math.ceil(d.windowSeconds)}`;

// ---------------------------------------------------------------------------------------------------
// Keys and stores

/**
 * Limiter Durable Objects the key space is spread over. Each check costs one call to the object owning
 * its key; an object takes on the order of 1,000 calls/s. A flash sale peaks at tens of thousands of
 * limited requests/s with two checks each (buyer and IP), so 1,024 objects leave each one ~100/s, far
 * from its ceiling, while every object still holds enough keys to stay warm. Changing it moves most keys
 * to another object, i.e. briefly forgets their state (lenient, never stricter).
 */
export const LIMITER_BUCKETS = 1024;

/** The Limiter object name owning `key` (`rl:<hash32(key) mod buckets>`). */
export const limiterObjectName = (key: string, buckets: number = LIMITER_BUCKETS): string => `rl:${hash32(key) % buckets}`;

/**
 * The rate-limit key of a client address: IPv4 as is; IPv6 reduced to its /64 (one subscriber usually
 * gets a whole /64, so per-address limits on IPv6 are trivially evaded).
 */
export function clientIpKey(ip: string): string {
  const s = ip.trim().toLowerCase();
  if (!s.includes(":")) return s.slice(0, 64);
  const [head = "", tail] = s.split("::", 2) as [string, string | undefined];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  if (groups.length < 4 || groups.slice(0, 4).some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return s.slice(0, 64);
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

/** Where TATs live, as the middleware sees it: one check of one key against one policy. */
export interface RateLimitStore {
  readonly kind: RateLimitStoreKind;
  /** Decides `cost` requests (default 1) of `key` under `policy`; rejects when the store is unreachable. */
  check(key: string, policy: RateLimitPolicy, cost?: number): Promise<RateLimitDecision>;
}

/** The narrow Limiter stub a {@link limiterStore} needs. */
interface LimiterStub {
  check(key: string, policy: RateLimitPolicy, nowMs?: number, cost?: number): Promise<RateLimitDecision>;
}

/** The narrow namespace a {@link limiterStore} needs (`env.LIMITER` fits). */
export interface LimiterNamespace {
  idFromName(name: string): DurableObjectId;
  get(id: DurableObjectId): LimiterStub;
}

/** The Cloudflare-native store: Limiter DOs, the key space spread over `buckets` objects. */
export function limiterStore(ns: LimiterNamespace, buckets: number = LIMITER_BUCKETS): RateLimitStore {
  return {
    kind: "durable-object",
    check: (key, policy, cost) => ns.get(ns.idFromName(limiterObjectName(key, buckets))).check(key, policy, undefined, cost),
  };
}

/** One limit a request is checked against: its key in the store, its policy's name and the policy. */
export interface RateCheck {
  key: string;
  name: string;
  policy: RateLimitPolicy;
}

/**
 * What the checks of one request decide, from what the store answered (the pure part of the rate-limit
 * middleware): refused when any answered check refused (a refusal wins over a failed call); failed when a
 * call failed and none refused (the route's failure policy decides); allowed otherwise. `items` are the
 * draft-11 `RateLimit` items of the checks that answered; `block` the keys to remember as refused.
 */
export type RateVerdict =
  | { kind: "allowed"; items: string[] }
  | { kind: "refused"; items: string[]; retryAfterSeconds: number; block: { key: string; until: number }[] }
  | { kind: "failed"; items: string[]; errors: string[] };

export function rateVerdict(
  checks: readonly RateCheck[],
  answers: readonly PromiseSettledResult<RateLimitDecision>[],
  now: number,
): RateVerdict {
  const items: string[] = [];
  const errors: string[] = [];
  const block: { key: string; until: number }[] = [];
  let retryAfterSeconds = 0;
  answers.forEach((a, i) => {
    const chk = checks[i] as RateCheck;
    if (a.status === "rejected") {
      errors.push(String(a.reason));
      return;
    }
    items.push(rateLimitItem(chk.name, a.value));
    if (!a.value.allowed) {
      retryAfterSeconds = Math.max(retryAfterSeconds, a.value.retryAfterSeconds);
      block.push({ key: chk.key, until: now + a.value.retryAfterSeconds * 1000 });
    }
  });
  if (block.length) return { kind: "refused", items, retryAfterSeconds, block };
  if (errors.length) return { kind: "failed", items, errors };
  return { kind: "allowed", items };
}

/**
 * The refusal a request earns without asking the store, because one of its keys was seen refused and its
 * retry time has not come (`remainingMs` of each key): the longest wait and its `RateLimit` items, or null.
 */
export function blockedVerdict(
  checks: readonly RateCheck[],
  remainingMs: (key: string) => number,
): { retryAfterSeconds: number; items: string[] } | null {
  let waitMs = 0;
  const items: string[] = [];
  for (const chk of checks) {
    const ms = remainingMs(chk.key);
    if (ms <= 0) continue;
    waitMs = Math.max(waitMs, ms);
    const s = ms / 1000;
    items.push(rateLimitItem(chk.name, { allowed: false, remaining: 0, resetSeconds: s, retryAfterSeconds: s, windowSeconds: s }));
  }
  return waitMs > 0 ? { retryAfterSeconds: waitMs / 1000, items } : null;
}

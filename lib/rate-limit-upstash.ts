import { Redis } from "@upstash/redis/cloudflare";
import { gcra, type RateLimitDecision, type RateLimitPolicy, type RateLimitStore } from "./rate-limit";

/**
 * The optional shared tier: the same GCRA as the Limiter DOs, with the TATs in Upstash Redis (one key
 * per rate-limit key, expiring when the key is rested). One Lua script does the read-decide-write
 * atomically; it is called by `EVALSHA` and loaded (`SCRIPT LOAD`) only when Redis answers `NOSCRIPT`.
 * Selected by `RATE_LIMITS` `{"store":"upstash"}` when `UPSTASH_REDIS_REST_URL`/`_TOKEN` are set;
 * Cloudflare-native Durable Objects stay the default.
 */

/**
 * The allow rule of `gcra()` in Lua, state in µs. `KEYS[1]`: the key. `ARGV`: emission interval T,
 * tolerance τ (both µs), cost, now (µs; negative: the Redis clock). Returns `{allowed, tat before (-1:
 * none), now}`; the caller derives the full decision from the state before with `gcra().check`, so both
 * stores report identically.
 */
export const GCRA_LUA = `
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local stored = redis.call('GET', KEYS[1])
local tat = -1
if stored then tat = tonumber(stored) end
local base = now
if tat > now then base = tat end
local after = base + cost * T
local allowed = 0
if now >= after - tau - T then
  allowed = 1
  if cost > 0 then
    redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1000)
  end
end
return { allowed, tat, now }
`;

/** What the store needs of an Upstash client (a fake in tests, `Redis` in production). */
export type UpstashScripting = Pick<Redis, "evalsha" | "scriptLoad">;

/** Options of {@link upstashStore}. */
export interface UpstashStoreOptions {
  /** Prefix of every Redis key (default `bw:rl:`). */
  prefix?: string;
  /** Clock in ms for decisions; by default the Redis server's (`TIME`), one clock for every isolate. */
  now?: () => number;
}

let scriptSha: Promise<string> | undefined;
/** Hex SHA-1 of {@link GCRA_LUA}, the name `EVALSHA` knows it by. */
export function gcraScriptSha(): Promise<string> {
  scriptSha ??= crypto.subtle.digest("SHA-1", new TextEncoder().encode(GCRA_LUA)).then((d) => {
    let hex = "";
    for (const b of new Uint8Array(d)) hex += b.toString(16).padStart(2, "0");
    return hex;
  });
  return scriptSha;
}

const isNoScript = (err: unknown): boolean => err instanceof Error && /NOSCRIPT/i.test(err.message);

/** A rate-limit store on Upstash Redis (or anything speaking its REST protocol). */
export function upstashStore(redis: UpstashScripting, opts: UpstashStoreOptions = {}): RateLimitStore {
  const prefix = opts.prefix ?? "bw:rl:";
  return {
    kind: "upstash",
    async check(key: string, policy: RateLimitPolicy, cost = 1): Promise<RateLimitDecision> {
      const g = gcra(policy);
      if (!Number.isInteger(cost) || cost < 0 || cost > g.policy.burst)
        throw new RangeError(`cost must be an integer from 0 to ${g.policy.burst}`);
      const sha = await gcraScriptSha();
      const nowUs = opts.now ? Math.round(opts.now() * 1_000) : -1;
      const args = [g.intervalUs, g.toleranceUs, cost, nowUs];
      const run = () => redis.evalsha<number[], unknown>(sha, [prefix + key], args);
      let reply: unknown;
      try {
        reply = await run();
      } catch (err) {
        if (!isNoScript(err)) throw err;
        await redis.scriptLoad(GCRA_LUA);
        reply = await run();
      }
      if (!Array.isArray(reply) || reply.length !== 3 || !reply.every((n) => typeof n === "number"))
        throw new Error(`unexpected GCRA script reply: ${JSON.stringify(reply)}`);
      const [allowed, tat, now] = reply as [number, number, number];
      const step = g.check(tat < 0 ? undefined : tat, now / 1_000, cost);
      if (step.decision.allowed !== (allowed === 1)) throw new Error("GCRA script and lib/rate-limit.ts disagree");
      return step.decision;
    },
  };
}

/** The Upstash credentials, when the deployment has them (secrets; absent from the generated `Env`). */
export interface UpstashEnv {
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
}

/**
 * An Upstash store from the deployment's credentials, or null when they are not set. The client does not
 * retry (a rate-limit check that cannot answer fast is a failure for the middleware's failure policy).
 */
export function upstashStoreFromEnv(env: UpstashEnv, opts: UpstashStoreOptions = {}): RateLimitStore | null {
  const url = env.UPSTASH_REDIS_REST_URL;
  const token = env.UPSTASH_REDIS_REST_TOKEN;
  if (!url || !token) return null;
  return upstashStore(new Redis({ url, token, retry: false, enableTelemetry: false, readYourWrites: false }), opts);
}

/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
 * delay = random(0, min(cap, base * 2^attempt)). Used by payment retries and queue consumers alike.
 */

/** Options of {@link backoffDelay}. */
export interface BackoffOptions {
  /** First ceiling, in the caller's unit (ms or s). */
  base: number;
  /** Largest ceiling. */
  cap: number;
  /** Random source in [0, 1); injectable for tests. */
  random?: () => number;
}

/** Delay before retry number `attempt` (0-based). */
export function backoffDelay(attempt: number, opts: BackoffOptions): number {
  const ceiling = Math.min(opts.cap, opts.base * 2 ** Math.max(0, attempt));
  return (opts.random ?? Math.random)() * ceiling;
}

/** How a queue's consumer spaces its retries, in seconds. */
export interface QueueRetryPolicy {
  /** First ceiling (s); doubles per attempt. */
  base: number;
  /** Largest ceiling (s). */
  cap: number;
  /**
   * Share of the ceiling always waited (0 = full jitter). Full jitter spreads retries well but may retry
   * almost at once: with a 1 s floor, 8 retries of an order could all pass in ~8 s of a shard outage.
   */
  floor: number;
}

/** Most queues: full jitter, 2 s doubling to 5 min. */
export const DEFAULT_QUEUE_RETRY: QueueRetryPolicy = { base: 2, cap: 300, floor: 0 };
/**
 * Orders: each retry waits at least half its ceiling, 5 s doubling to 10 min, so the 8 retries of
 * wrangler.toml span at least ~10 minutes (617 s) of an outage before a message is dead-lettered.
 */
export const ORDERS_QUEUE_RETRY: QueueRetryPolicy = { base: 5, cap: 600, floor: 0.5 };

/** The least total delay of `retries` retries under `policy` (s). */
export const minimumRetrySpan = (policy: QueueRetryPolicy, retries: number): number =>
  Array.from({ length: retries }, (_, i) => Math.min(policy.cap, policy.base * 2 ** i) * policy.floor).reduce((a, b) => a + b, 0);

/** Queue redelivery delay in whole seconds (Queues take integer `delaySeconds`, at least 1). */
export function queueRetryDelaySeconds(attempts: number, opts: { random?: () => number; policy?: QueueRetryPolicy } = {}): number {
  const p = opts.policy ?? DEFAULT_QUEUE_RETRY;
  const ceiling = Math.min(p.cap, p.base * 2 ** Math.max(0, attempts - 1));
  const r = (opts.random ?? Math.random)();
  return Math.max(1, Math.ceil(ceiling * (p.floor + (1 - p.floor) * r)));
}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

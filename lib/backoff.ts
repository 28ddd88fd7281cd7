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

/** Queue redelivery delay in whole seconds (Queues take integer `delaySeconds`, at least 1). */
export const queueRetryDelaySeconds = (attempts: number, opts: Omit<BackoffOptions, "base" | "cap"> = {}): number =>
  Math.max(1, Math.ceil(backoffDelay(attempts - 1, { base: 2, cap: 300, ...opts })));

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

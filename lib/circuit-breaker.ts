import { metric } from "./metric-catalog";

/** Breaker states. */
export type BreakerState = "closed" | "open" | "half_open";

/** Options of {@link CircuitBreaker}. */
export interface BreakerOptions {
  /** Name in metrics and errors. */
  name: string;
  /** Length of the failure-rate window (ms). */
  windowMs?: number;
  /** Fewest calls in the window before the rate is judged. */
  minCalls?: number;
  /** Failure rate (0..1) that opens the breaker. */
  failureRate?: number;
  /** How long it stays open before letting probes through (ms). */
  openMs?: number;
  /** Probes allowed at once while half-open. */
  halfOpenProbes?: number;
  /** Clock (tests). */
  now?: () => number;
}

/** Thrown when the breaker refuses a call; `retryAfterMs` tells when it will try again. */
export class BreakerOpenError extends Error {
  constructor(
    readonly breaker: string,
    readonly retryAfterMs: number,
  ) {
    super(`${breaker} circuit is open`);
    this.name = "BreakerOpenError";
  }
}

/**
 * A circuit breaker with a failure-rate window: closed → open when, over the last `windowMs`, at least
 * `minCalls` calls were made and `failureRate` of them failed; open → half-open after `openMs`;
 * half-open lets `halfOpenProbes` calls through: one success closes it, one failure opens it again.
 * State is per isolate (each isolate protects itself; see README "Payments").
 */
export class CircuitBreaker {
  private state: BreakerState = "closed";
  private openedAt = 0;
  private probes = 0;
  private calls: { at: number; ok: boolean }[] = [];
  private readonly o: Required<Omit<BreakerOptions, "now">> & { now: () => number };

  constructor(opts: BreakerOptions) {
    this.o = {
      windowMs: 10_000,
      minCalls: 10,
      failureRate: 0.5,
      openMs: 5_000,
      halfOpenProbes: 1,
      now: () => Date.now(),
      ...opts,
    };
    this.publish();
  }

  /** Current state (moves open → half-open when the open period is over). */
  current(): BreakerState {
    if (this.state === "open" && this.o.now() - this.openedAt >= this.o.openMs) {
      this.state = "half_open";
      this.probes = 0;
      this.publish();
    }
    return this.state;
  }

  /**
   * Runs `fn` through the breaker. `isFailure` decides which outcomes count against the provider (a
   * declined card is a success for the breaker; an outage is not).
   */
  async run<T>(fn: () => Promise<T>, isFailure: (err: unknown) => boolean = () => true): Promise<T> {
    const state = this.current();
    if (state === "open") throw new BreakerOpenError(this.o.name, this.o.openMs - (this.o.now() - this.openedAt));
    if (state === "half_open") {
      if (this.probes >= this.o.halfOpenProbes) throw new BreakerOpenError(this.o.name, this.o.openMs);
      this.probes++;
    }
    try {
      const value = await fn();
      this.record(true);
      return value;
    } catch (err) {
      this.record(!isFailure(err));
      throw err;
    }
  }

  private record(ok: boolean): void {
    const now = this.o.now();
    if (this.state === "half_open") {
      if (ok) {
        this.state = "closed";
        this.calls = [];
      } else this.trip(now);
      this.publish();
      return;
    }
    this.calls.push({ at: now, ok });
    const since = now - this.o.windowMs;
    while (this.calls.length && (this.calls[0] as { at: number }).at < since) this.calls.shift();
    const failures = this.calls.filter((c) => !c.ok).length;
    if (this.state === "closed" && this.calls.length >= this.o.minCalls && failures / this.calls.length >= this.o.failureRate)
      this.trip(now);
  }

  private trip(now: number): void {
    this.state = "open";
    this.openedAt = now;
    this.calls = [];
    metric.breakerTrips.inc({ breaker: this.o.name });
    this.publish();
  }

  private publish(): void {
    const code = { closed: 0, half_open: 1, open: 2 }[this.state];
    metric.breakerState.set({ breaker: this.o.name }, code);
  }
}

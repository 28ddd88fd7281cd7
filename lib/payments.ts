import { backoffDelay, sleep } from "./backoff";
import { BreakerOpenError, CircuitBreaker } from "./circuit-breaker";
import { metrics } from "./metrics";
import { ApiError } from "./problem";

/**
 * Payment providers behind one interface. Every charge carries an idempotency key (the order id), so a
 * retried or duplicated charge is charged once, and `voidCharge(key)` can undo whatever a call with an
 * unknown outcome (timeout, 5xx) may have done.
 */

/** A charge request. */
export interface ChargeRequest {
  idempotencyKey: string;
  amount: number;
  currency: string;
  token: string;
  signal?: AbortSignal;
}

/**
 * The provider's answer to a charge that reached a decision, or `pending`: the provider took the payment
 * but has not settled it yet (a card PaymentIntent in `processing`); its final outcome arrives later
 * (Stripe's signed webhook), and until then the hold stays locked in checkout.
 */
export type ChargeResult =
  | { status: "succeeded"; chargeId: string }
  | { status: "declined"; reason: string }
  | { status: "pending"; chargeId: string };

/** What a provider may need to find and undo a charge: its amount (a card provider re-derives the request). */
export interface ChargeAmount {
  amount: number;
  currency: string;
}

/** The provider could not be reached or failed (5xx, timeout): the outcome is unknown. */
export class PaymentUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PaymentUnavailableError";
  }
}

/** One payment provider. */
export interface PaymentProvider {
  readonly name: string;
  /**
   * True for a token that asks a test provider to simulate a failure for this one request (the sandbox's
   * `tok_error`, `tok_flaky`, `tok_lost`, `tok_slow`): what it does says nothing about the provider's
   * health, so the shared circuit breaker does not count it. Real providers leave this out.
   */
  simulatesFailure?(token: string): boolean;
  charge(req: ChargeRequest): Promise<ChargeResult>;
  /**
   * Refunds any successful charge made under `idempotencyKey` (and cancels one not yet made); `refunded:
   * false` when there was none. `charge` is the amount of the original request (the card provider needs it).
   */
  voidCharge(idempotencyKey: string, signal?: AbortSignal, charge?: ChargeAmount): Promise<{ refunded: boolean; chargeId?: string }>;
}

// ───────────────────────────── sandbox ─────────────────────────────

/** A charge as the sandbox remembers it (tests read these to prove invariant 2). */
export interface SandboxCharge {
  idempotencyKey: string;
  chargeId: string;
  amount: number;
  currency: string;
  status: "succeeded" | "refunded";
}

const sandboxCharges = new Map<string, SandboxCharge>();
const sandboxAttempts = new Map<string, number>();
/** A simulated outage of the whole sandbox provider (tests of the circuit breaker). */
let sandboxOutage = false;
/** Turns a simulated outage of the whole sandbox on or off: every charge fails like a provider 503. */
export function setSandboxOutage(on: boolean): void {
  sandboxOutage = on;
}
/** Tokens that simulate a failure of one request; see {@link PaymentProvider.simulatesFailure}. */
const SIMULATED_FAILURES = new Set(["tok_error", "tok_flaky", "tok_lost", "tok_slow"]);

/** Every charge the sandbox made in this isolate. */
export const sandboxLedger = (): SandboxCharge[] => [...sandboxCharges.values()];
/** Provider calls made to the sandbox (charge attempts), for tests of retries and the breaker. */
export const sandboxCallCount = (): number => [...sandboxAttempts.values()].reduce((a, b) => a + b, 0);
/** Forgets the sandbox's state (tests). */
export function resetSandbox(): void {
  sandboxCharges.clear();
  sandboxAttempts.clear();
  sandboxOutage = false;
}

/**
 * The sandbox provider of API.md. Tokens: `tok_ok` succeeds; `tok_decline` is declined; `tok_slow`
 * succeeds after about 2 s; `tok_error` fails like an outage. Sandbox-only extras for failure tests:
 * `tok_flaky` fails once per key then succeeds; `tok_lost` charges but the answer never arrives (the call
 * hangs until the caller's timeout), so the charge must be voided. These tokens are one buyer's
 * simulated failure and do not count against the provider's circuit breaker; {@link setSandboxOutage}
 * simulates a provider outage that does. State lives in the isolate: a simulator, not a ledger.
 */
export function sandboxProvider(opts: { slowMs?: number } = {}): PaymentProvider {
  const slowMs = opts.slowMs ?? 2_000;
  const succeed = (req: ChargeRequest): ChargeResult => {
    const existing = sandboxCharges.get(req.idempotencyKey);
    if (existing) return { status: "succeeded", chargeId: existing.chargeId };
    const chargeId = `ch_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;
    sandboxCharges.set(req.idempotencyKey, {
      idempotencyKey: req.idempotencyKey,
      chargeId,
      amount: req.amount,
      currency: req.currency,
      status: "succeeded",
    });
    return { status: "succeeded", chargeId };
  };
  return {
    name: "sandbox",
    simulatesFailure: (token) => SIMULATED_FAILURES.has(token),
    async charge(req) {
      const attempt = (sandboxAttempts.get(req.idempotencyKey) ?? 0) + 1;
      sandboxAttempts.set(req.idempotencyKey, attempt);
      if (sandboxOutage) throw new PaymentUnavailableError("sandbox: provider outage (503)");
      switch (req.token) {
        case "tok_ok":
          return succeed(req);
        case "tok_decline":
          return { status: "declined", reason: "card_declined" };
        case "tok_slow":
          await sleep(slowMs);
          return succeed(req);
        case "tok_error":
          throw new PaymentUnavailableError("sandbox: provider outage (503)");
        case "tok_flaky":
          if (attempt === 1) throw new PaymentUnavailableError("sandbox: transient failure (502)");
          return succeed(req);
        case "tok_lost":
          succeed(req);
          await new Promise<never>((_, reject) =>
            req.signal?.addEventListener("abort", () => reject(new PaymentUnavailableError("sandbox: timed out"))),
          );
          throw new PaymentUnavailableError("unreachable");
        default:
          return { status: "declined", reason: "invalid_token" };
      }
    },
    async voidCharge(idempotencyKey) {
      const c = sandboxCharges.get(idempotencyKey);
      if (!c || c.status === "refunded") return { refunded: false };
      c.status = "refunded";
      return { refunded: true, chargeId: c.chargeId };
    },
  };
}

// ───────────────────────────── resilient calls ─────────────────────────────

/** Timeouts and retries of provider calls. */
export interface PaymentPolicy {
  /** Per-attempt timeout (ms). */
  timeoutMs: number;
  /** Retries after the first attempt, for outages only (safe: charges are idempotent). */
  retries: number;
  /** Backoff base and cap (ms), full jitter. */
  backoffBaseMs: number;
  backoffCapMs: number;
}

/** Defaults: 8 s per attempt (tok_slow takes 2 s), two retries. */
export const DEFAULT_PAYMENT_POLICY: PaymentPolicy = { timeoutMs: 8_000, retries: 2, backoffBaseMs: 100, backoffCapMs: 1_000 };

async function withTimeout<T>(ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ctrl = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ctrl.abort();
      reject(new PaymentUnavailableError(`payment provider timed out after ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([fn(ctrl.signal), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Breakers per provider name, per isolate. */
const breakers = new Map<string, CircuitBreaker>();
/** The breaker guarding a provider. */
export function breakerFor(provider: string): CircuitBreaker {
  let b = breakers.get(provider);
  if (!b) {
    b = new CircuitBreaker({ name: `payments:${provider}` });
    breakers.set(provider, b);
  }
  return b;
}
/** Resets all breakers (tests). */
export const resetBreakers = (): void => breakers.clear();

/** Outcome of {@link chargeWithPolicy}: decided, or unknown after retries (must be voided). */
export type ChargeOutcome = ChargeResult | { status: "unknown"; error: string };

/**
 * Charges through the provider's circuit breaker with a timeout per attempt and retries with full-jitter
 * backoff on outages. A decline is an answer, not a failure, and so is a failure the buyer's test token
 * asked for ({@link PaymentProvider.simulatesFailure}): only the provider's own failures count against the
 * breaker. While the breaker is open this throws 503 `overloaded` with Retry-After and calls nothing.
 */
export async function chargeWithPolicy(
  provider: PaymentProvider,
  req: Omit<ChargeRequest, "signal">,
  policy = DEFAULT_PAYMENT_POLICY,
): Promise<ChargeOutcome> {
  const breaker = breakerFor(provider.name);
  const providerFault = !provider.simulatesFailure?.(req.token);
  let lastError = "";
  for (let attempt = 0; attempt <= policy.retries; attempt++) {
    if (attempt > 0) await sleep(backoffDelay(attempt - 1, { base: policy.backoffBaseMs, cap: policy.backoffCapMs }));
    try {
      const result = await breaker.run(
        () => withTimeout(policy.timeoutMs, (signal) => provider.charge({ ...req, signal })),
        (err) => providerFault && err instanceof PaymentUnavailableError,
      );
      metrics.inc("breakwater_payments_total", { provider: provider.name, outcome: result.status }, 1, "Payment attempts by outcome");
      return result;
    } catch (err) {
      if (err instanceof BreakerOpenError) {
        metrics.inc("breakwater_payments_total", { provider: provider.name, outcome: "breaker_open" }, 1, "Payment attempts by outcome");
        if (attempt === 0)
          throw new ApiError("overloaded", "Payments are temporarily unavailable; no charge was made.", {
            retryAfterSeconds: Math.ceil(err.retryAfterMs / 1000),
          });
        return { status: "unknown", error: err.message };
      }
      if (!(err instanceof PaymentUnavailableError)) throw err;
      lastError = err.message;
      metrics.inc("breakwater_payments_total", { provider: provider.name, outcome: "unavailable" }, 1, "Payment attempts by outcome");
    }
  }
  return { status: "unknown", error: lastError };
}

/** The sandbox provider this isolate uses (lib/payment-methods.ts picks providers by method). */
export const sandboxProviderInstance = sandboxProvider();

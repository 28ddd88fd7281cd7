import { backoffDelay, sleep } from "./backoff";
import { BreakerOpenError, CircuitBreaker } from "./circuit-breaker";
import { faultWindow } from "./faults";
import { metric } from "./metric-catalog";
import { ApiError } from "./problem";
import { withTimeout } from "./timeout";

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
  /**
   * Refunds `amount` of the successful charge made under `req.chargeKey`, idempotently per `req.refundKey`:
   * the same refund key refunds once however often it is sent (an organizer's refund of some tickets; a
   * charge may carry several). Throws {@link PaymentUnavailableError} when the outcome is unknown (retry
   * with the same key); `refunded: false` when there is no successful charge under that key.
   */
  refund(req: RefundRequest): Promise<{ refunded: boolean; chargeId?: string }>;
}

/** A refund of part (or all) of a charge. */
interface RefundRequest {
  /** Idempotency key of this refund (one per refund, never reused for another amount). */
  refundKey: string;
  /** Idempotency key of the charge it refunds (the checkout attempt's payment key). */
  chargeKey: string;
  /** The amount to refund (minor units). */
  amount: number;
  /** The original charge (a card provider re-derives its request to find it). */
  charge: ChargeAmount;
}

// ───────────────────────────── sandbox ─────────────────────────────

/** A charge as the sandbox remembers it (tests and the drop's checker read these to prove invariant 2). */
export interface SandboxCharge {
  idempotencyKey: string;
  chargeId: string;
  amount: number;
  currency: string;
  status: "succeeded" | "refunded";
  /** When it was charged, and refunded (ISO). */
  chargedAt?: string;
  refundedAt?: string;
  /** Refunds of some or all of it (organizer refunds, cancellations), one per refund key. */
  refunds?: { key: string; amount: number; at: string }[];
}

/**
 * Where the sandbox keeps its charges durably, as a real provider would: a process that dies does not
 * forget what it charged (a restart must still be able to void or find a charge).
 */
export interface SandboxLedgerStore {
  get(idempotencyKey: string): Promise<SandboxCharge | null>;
  /** Stores the charge unless one is stored under its key; answers the one stored (the first wins). */
  record(charge: SandboxCharge): Promise<SandboxCharge>;
  put(charge: SandboxCharge): Promise<void>;
  /** Every charge. */
  list(): Promise<SandboxCharge[]>;
}

/** The SandboxLedger object that keeps the sandbox's charges (durable-objects/sandbox-ledger.ts). */
export const SANDBOX_LEDGER_NAME = "sandbox";

/** The sandbox ledger in its SandboxLedger Durable Object: one call per charge. */
export function objectSandboxLedger(ns: Env["SANDBOX_LEDGER"]): SandboxLedgerStore {
  const object = () => ns.get(ns.idFromName(SANDBOX_LEDGER_NAME));
  return {
    get: (key) => object().get(key),
    record: (c) => object().record(c),
    put: (c) => object().put(c),
    list: () => object().list(),
  };
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
 * simulates a provider outage that does. Charges are kept in the isolate and,
 * with `ledger`, durably (written before a charge or void answers; read when the isolate does not know a
 * key, e.g. after a restart). While the `payments` fault window is open (lib/faults.ts) every charge and
 * void fails like an outage, before anything is charged.
 */
export function sandboxProvider(opts: { slowMs?: number; ledger?: SandboxLedgerStore } = {}): PaymentProvider {
  const slowMs = opts.slowMs ?? 2_000;
  const ledger = opts.ledger;
  const known = async (key: string): Promise<SandboxCharge | undefined> => {
    const mem = sandboxCharges.get(key);
    if (mem || !ledger) return mem;
    const stored = await ledger.get(key);
    if (stored && !sandboxCharges.has(key)) sandboxCharges.set(key, stored);
    return sandboxCharges.get(key);
  };
  const outage = (what: string) => {
    if (faultWindow("payments")) throw new PaymentUnavailableError(`sandbox: provider outage during ${what} (injected fault)`);
  };
  const succeed = async (req: ChargeRequest): Promise<ChargeResult> => {
    const existing = sandboxCharges.get(req.idempotencyKey);
    if (existing) return { status: "succeeded", chargeId: existing.chargeId };
    const fresh: SandboxCharge = {
      idempotencyKey: req.idempotencyKey,
      chargeId: `ch_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`,
      amount: req.amount,
      currency: req.currency,
      status: "succeeded",
      chargedAt: new Date().toISOString(),
    };
    // One call to the ledger: a charge stored under this key before (another isolate, or this one before a
    // restart) is the one that stands, as with a provider's idempotency key.
    const stored = ledger ? await ledger.record(fresh) : fresh;
    const charge = sandboxCharges.get(req.idempotencyKey) ?? stored;
    sandboxCharges.set(req.idempotencyKey, charge);
    return { status: "succeeded", chargeId: charge.chargeId };
  };
  return {
    name: "sandbox",
    simulatesFailure: (token) => SIMULATED_FAILURES.has(token),
    async charge(req) {
      const attempt = (sandboxAttempts.get(req.idempotencyKey) ?? 0) + 1;
      sandboxAttempts.set(req.idempotencyKey, attempt);
      if (sandboxOutage) throw new PaymentUnavailableError("sandbox: provider outage (503)");
      outage("charge");
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
          await succeed(req);
          await new Promise<never>((_, reject) =>
            req.signal?.addEventListener("abort", () => reject(new PaymentUnavailableError("sandbox: timed out"))),
          );
          throw new PaymentUnavailableError("unreachable");
        default:
          return { status: "declined", reason: "invalid_token" };
      }
    },
    async voidCharge(idempotencyKey) {
      outage("void");
      const c = await known(idempotencyKey);
      if (!c || c.status === "refunded") return { refunded: false };
      c.status = "refunded";
      c.refundedAt = new Date().toISOString();
      await ledger?.put(c);
      return { refunded: true, chargeId: c.chargeId };
    },
    async refund(req) {
      outage("refund");
      const c = await known(req.chargeKey);
      if (!c) return { refunded: false };
      const refunds = c.refunds ?? [];
      if (refunds.some((r) => r.key === req.refundKey)) return { refunded: true, chargeId: c.chargeId };
      const back = refunds.reduce((n, r) => n + r.amount, 0);
      if (c.status === "refunded" || back + req.amount > c.amount)
        throw new Error(`sandbox: refund of ${req.amount} exceeds what is left of ${c.chargeId}`);
      const at = new Date().toISOString();
      c.refunds = [...refunds, { key: req.refundKey, amount: req.amount, at }];
      if (back + req.amount === c.amount) {
        c.status = "refunded";
        c.refundedAt = at;
      }
      await ledger?.put(c);
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
        () =>
          withTimeout(
            policy.timeoutMs,
            (signal) => provider.charge({ ...req, signal }),
            () => new PaymentUnavailableError(`payment provider timed out after ${policy.timeoutMs} ms`),
          ),
        (err) => providerFault && err instanceof PaymentUnavailableError,
      );
      metric.payments.inc({ provider: provider.name, outcome: result.status });
      return result;
    } catch (err) {
      if (err instanceof BreakerOpenError) {
        metric.payments.inc({ provider: provider.name, outcome: "breaker_open" });
        if (attempt === 0)
          throw new ApiError("overloaded", "Payments are temporarily unavailable; no charge was made.", {
            retryAfterSeconds: Math.ceil(err.retryAfterMs / 1000),
          });
        return { status: "unknown", error: err.message };
      }
      if (!(err instanceof PaymentUnavailableError)) throw err;
      lastError = err.message;
      metric.payments.inc({ provider: provider.name, outcome: "unavailable" });
    }
  }
  return { status: "unknown", error: lastError };
}

/** The sandbox provider this isolate uses (lib/payment-methods.ts picks providers by method). */
export const sandboxProviderInstance = sandboxProvider();

const durableSandboxes = new WeakMap<Env["SANDBOX_LEDGER"], PaymentProvider>();
/** The sandbox with its durable ledger in SandboxLedger objects: one per namespace, sharing the isolate's memory. */
export function durableSandbox(ns: Env["SANDBOX_LEDGER"]): PaymentProvider {
  let p = durableSandboxes.get(ns);
  if (!p) {
    p = sandboxProvider({ ledger: objectSandboxLedger(ns) });
    durableSandboxes.set(ns, p);
  }
  return p;
}

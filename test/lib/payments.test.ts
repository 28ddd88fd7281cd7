import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { backoffDelay, queueRetryDelaySeconds } from "../../lib/backoff";
import {
  breakerFor,
  chargeWithPolicy,
  durableSandbox,
  objectSandboxLedger,
  resetBreakers,
  resetSandbox,
  sandboxCallCount,
  sandboxLedger,
  sandboxProvider,
  setSandboxOutage,
} from "../../lib/payments";
import { ApiError } from "../../lib/problem";

const fast = { timeoutMs: 200, retries: 2, backoffBaseMs: 1, backoffCapMs: 5 };
const provider = sandboxProvider({ slowMs: 20 });
const req = (token: string, key = crypto.randomUUID()) => ({ idempotencyKey: key, amount: 1000, currency: "EUR", token });

beforeEach(() => {
  resetSandbox();
  resetBreakers();
});

describe("sandbox provider with timeouts, retries and the breaker", () => {
  it("charges tok_ok once per idempotency key", async () => {
    const a = await chargeWithPolicy(provider, req("tok_ok", "k1"), fast);
    const b = await chargeWithPolicy(provider, req("tok_ok", "k1"), fast);
    expect(a).toEqual(b);
    expect(sandboxLedger()).toHaveLength(1);
  });

  it("reports declines as answers, without retrying", async () => {
    expect(await chargeWithPolicy(provider, req("tok_decline"), fast)).toEqual({ status: "declined", reason: "card_declined" });
    expect(sandboxCallCount()).toBe(1);
    expect(sandboxLedger()).toHaveLength(0);
  });

  it("retries a transient outage and succeeds", async () => {
    const r = await chargeWithPolicy(provider, req("tok_flaky"), fast);
    expect(r.status).toBe("succeeded");
    expect(sandboxCallCount()).toBe(2);
  });

  it("gives up on a lasting outage with an unknown outcome after 1 + retries attempts", async () => {
    const r = await chargeWithPolicy(provider, req("tok_error"), fast);
    expect(r.status).toBe("unknown");
    expect(sandboxCallCount()).toBe(3);
  });

  it("times out a lost answer, leaving a charge that voiding refunds", async () => {
    const r = await chargeWithPolicy(provider, req("tok_lost", "lost-1"), { ...fast, retries: 0 });
    expect(r.status).toBe("unknown");
    expect(sandboxLedger()).toMatchObject([{ idempotencyKey: "lost-1", status: "succeeded" }]);
    expect(await provider.voidCharge("lost-1")).toMatchObject({ refunded: true });
    expect(sandboxLedger()[0]?.status).toBe("refunded");
    expect(await provider.voidCharge("lost-1")).toEqual({ refunded: false });
  });

  it("waits for tok_slow within the timeout", async () => {
    expect((await chargeWithPolicy(provider, req("tok_slow"), fast)).status).toBe("succeeded");
  });

  it("opens the breaker after repeated provider outages and then fails fast with 503 without calling the provider", async () => {
    setSandboxOutage(true);
    for (let i = 0; i < 4; i++) expect((await chargeWithPolicy(provider, req("tok_ok"), fast)).status).toBe("unknown");
    expect(breakerFor("sandbox").current()).toBe("open");
    setSandboxOutage(false);
    const calls = sandboxCallCount();
    const err = await chargeWithPolicy(provider, req("tok_ok"), fast).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe("overloaded");
    expect((err as ApiError).retryAfterSeconds).toBeGreaterThan(0);
    expect(sandboxCallCount()).toBe(calls);
  });
});

describe("the shared payment breaker and sandbox test tokens", () => {
  it("is not opened by buyers' tok_error, tok_flaky or tok_lost: other buyers still pay", async () => {
    // Two buyers retrying tok_error many times (3 provider calls each), plus flaky and lost answers.
    for (let i = 0; i < 10; i++) {
      expect((await chargeWithPolicy(provider, req("tok_error"), fast)).status).toBe("unknown");
      expect((await chargeWithPolicy(provider, req("tok_error"), fast)).status).toBe("unknown");
    }
    await chargeWithPolicy(provider, req("tok_flaky"), fast);
    await chargeWithPolicy(provider, req("tok_lost"), { ...fast, timeoutMs: 5, retries: 0 });
    expect(breakerFor("sandbox").current()).toBe("closed");
    expect(await chargeWithPolicy(provider, req("tok_ok", "someone-else"), fast)).toMatchObject({ status: "succeeded" });
  });

  it("while open, refuses test tokens too (no provider call)", async () => {
    setSandboxOutage(true);
    for (let i = 0; i < 4; i++) await chargeWithPolicy(provider, req("tok_ok"), fast);
    setSandboxOutage(false);
    const calls = sandboxCallCount();
    const err = await chargeWithPolicy(provider, req("tok_error"), fast).catch((e: unknown) => e);
    expect((err as ApiError).code).toBe("overloaded");
    expect(sandboxCallCount()).toBe(calls);
  });
});

describe("queue retry delays (full jitter)", () => {
  it("grow with attempts, stay within the cap and are at least a second", () => {
    expect(queueRetryDelaySeconds(1, { random: () => 0 })).toBe(1);
    expect(queueRetryDelaySeconds(3, { random: () => 0.999 })).toBe(8);
    expect(queueRetryDelaySeconds(20, { random: () => 0.999 })).toBe(300);
    for (let a = 0; a < 10; a++) {
      const d = backoffDelay(a, { base: 100, cap: 1000 });
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(Math.min(1000, 100 * 2 ** a));
    }
  });
});

describe("sandbox's durable ledger (SandboxLedger)", () => {
  it("keeps the first charge under a key, whoever charges again, and a restarted isolate still voids it", async () => {
    const ledger = objectSandboxLedger(env.SANDBOX_LEDGER);
    const key = `ledger-${crypto.randomUUID()}:1`;
    const first = await durableSandbox(env.SANDBOX_LEDGER).charge(req("tok_ok", key));
    // Another isolate that never saw this charge (memory forgotten) charging the same key gets the same charge.
    resetSandbox();
    const again = await durableSandbox(env.SANDBOX_LEDGER).charge(req("tok_ok", key));
    expect(again).toEqual(first);
    // A second record under the key never replaces the first.
    const stored = await ledger.record({ idempotencyKey: key, chargeId: "ch_other", amount: 1, currency: "EUR", status: "succeeded" });
    expect(stored.chargeId).toBe(first.status === "succeeded" ? first.chargeId : "");
    resetSandbox();
    expect(await durableSandbox(env.SANDBOX_LEDGER).voidCharge(key)).toEqual({ refunded: true, chargeId: stored.chargeId });
    expect(await ledger.get(key)).toMatchObject({ status: "refunded", chargeId: stored.chargeId });
    expect((await ledger.list()).filter((c) => c.idempotencyKey === key)).toHaveLength(1);
  });

  it("lists every charge", async () => {
    const keys = Array.from({ length: 24 }, (_, i) => `list-${i}-${crypto.randomUUID()}:1`);
    await Promise.all(keys.map((k) => durableSandbox(env.SANDBOX_LEDGER).charge(req("tok_ok", k))));
    const listed = new Set((await objectSandboxLedger(env.SANDBOX_LEDGER).list()).map((c) => c.idempotencyKey));
    expect(keys.every((k) => listed.has(k))).toBe(true);
  });
});

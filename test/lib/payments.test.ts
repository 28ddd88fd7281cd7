import { beforeEach, describe, expect, it } from "vitest";
import { backoffDelay, queueRetryDelaySeconds } from "../../lib/backoff";
import { chargeWithPolicy, resetBreakers, resetSandbox, sandboxCallCount, sandboxLedger, sandboxProvider } from "../../lib/payments";
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

  it("opens the breaker after repeated outages and then fails fast with 503 without calling the provider", async () => {
    for (let i = 0; i < 4; i++) await chargeWithPolicy(provider, req("tok_error"), fast);
    const calls = sandboxCallCount();
    const err = await chargeWithPolicy(provider, req("tok_ok"), fast).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe("overloaded");
    expect((err as ApiError).retryAfterSeconds).toBeGreaterThan(0);
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

import { describe, expect, it } from "vitest";
import { BreakerOpenError, CircuitBreaker } from "../../lib/circuit-breaker";

const failing = () => Promise.reject(new Error("down"));
const fine = () => Promise.resolve("ok");

describe("CircuitBreaker", () => {
  it("opens at the failure rate, fails fast while open, half-opens, and closes on a good probe", async () => {
    let now = 0;
    const b = new CircuitBreaker({ name: "t", minCalls: 4, failureRate: 0.5, openMs: 1_000, windowMs: 10_000, now: () => now });
    await b.run(fine);
    await b.run(fine);
    await expect(b.run(failing)).rejects.toThrow("down");
    expect(b.current()).toBe("closed");
    await expect(b.run(failing)).rejects.toThrow("down"); // 2 of 4 failed
    expect(b.current()).toBe("open");
    let called = false;
    await expect(
      b.run(async () => {
        called = true;
        return 1;
      }),
    ).rejects.toBeInstanceOf(BreakerOpenError);
    expect(called).toBe(false);
    now = 1_000;
    expect(b.current()).toBe("half_open");
    await expect(b.run(fine)).resolves.toBe("ok");
    expect(b.current()).toBe("closed");
  });

  it("re-opens when the half-open probe fails, and allows only the configured probes", async () => {
    let now = 0;
    const b = new CircuitBreaker({ name: "t2", minCalls: 1, failureRate: 1, openMs: 500, now: () => now });
    await expect(b.run(failing)).rejects.toThrow();
    expect(b.current()).toBe("open");
    now = 600;
    let release: () => void = () => {};
    const probe = b.run(() => new Promise<void>((r) => (release = r)));
    await expect(b.run(fine)).rejects.toBeInstanceOf(BreakerOpenError);
    release();
    await probe;
    expect(b.current()).toBe("closed");
    await expect(b.run(failing)).rejects.toThrow();
    now = 1_200;
    expect(b.current()).toBe("half_open");
    await expect(b.run(failing)).rejects.toThrow("down");
    expect(b.current()).toBe("open");
  });

  it("does not count outcomes the caller says are not failures (declines)", async () => {
    const b = new CircuitBreaker({ name: "t3", minCalls: 2, failureRate: 0.5 });
    for (let i = 0; i < 5; i++) await expect(b.run(failing, () => false)).rejects.toThrow();
    expect(b.current()).toBe("closed");
  });

  it("forgets failures older than the window", async () => {
    let now = 0;
    const b = new CircuitBreaker({ name: "t4", minCalls: 3, failureRate: 0.6, windowMs: 1_000, now: () => now });
    await expect(b.run(failing)).rejects.toThrow();
    await expect(b.run(failing)).rejects.toThrow();
    now = 2_000;
    await b.run(fine);
    await b.run(fine);
    await expect(b.run(failing)).rejects.toThrow();
    expect(b.current()).toBe("closed");
  });
});

import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { clearFaults, faultWindow, setFault } from "../../lib/faults";
import type { OrderMessage } from "../../lib/order";
import { D1OrderStore } from "../../lib/order-store";
import { paymentProvider } from "../../lib/payment-methods";
import { resetBreakers, resetSandbox, type SandboxCharge, sandboxLedger } from "../../lib/payments";
import { app } from "../../workers/app";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";
import { freshTag, orderMsg } from "../queues/helpers";

/** Calls the app with FAULT_INJECTION on (the test configuration leaves it off, as wrangler.toml does). */
async function callWithFaults(path: string, init: { method?: string; token?: string; json?: unknown } = {}): Promise<Response> {
  const headers = new Headers();
  if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
  if (init.json !== undefined) headers.set("Content-Type", "application/json");
  const ctx = createExecutionContext();
  const res = await app.fetch(
    new Request(`https://breakwater.test${path}`, {
      method: init.method ?? "GET",
      headers,
      body: init.json === undefined ? undefined : JSON.stringify(init.json),
    }),
    { ...env, FAULT_INJECTION: "true" },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

let admin: string;
let buyer: string;
let organizer: string;
let ev: EventBody;
beforeAll(async () => {
  admin = await tokenFor("rehearsal-admin", "admin");
  buyer = await tokenFor("rehearsal-buyer", "buyer");
  organizer = await tokenFor("rehearsal-org", "organizer");
  ev = await createEvent(organizer, { perCustomerLimit: 10 });
});
beforeEach(() => {
  resetSandbox();
  resetBreakers();
});
afterEach(() => clearFaults());

describe("fault API", () => {
  it("does not exist without FAULT_INJECTION (the default): 404 to an admin (401/403 to others, as every admin route), and nothing opens", async () => {
    expect(env.FAULT_INJECTION).not.toBe("true");
    for (const [method, json] of [
      ["GET", undefined],
      ["PUT", { name: "payments", seconds: 20 }],
    ] as const) {
      const res = await call("/v1/admin/faults", { method, token: admin, json });
      expect(res.status).toBe(404);
      expect(((await res.json()) as Problem).code).toBe("not_found");
    }
    expect((await call("/v1/admin/faults", { token: buyer })).status).toBe(403);
    expect((await call("/v1/admin/faults")).status).toBe(401);
    expect(faultWindow("payments")).toBeUndefined();
  });

  it("with FAULT_INJECTION on: admin only; opens, lists and closes a window; bad input is refused and opens nothing", async () => {
    expect((await callWithFaults("/v1/admin/faults", { method: "PUT", token: buyer, json: { name: "payments", seconds: 5 } })).status).toBe(
      403,
    );
    const bad = await callWithFaults("/v1/admin/faults", { method: "PUT", token: admin, json: { name: "disk", seconds: 5 } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as Problem).code).toBe("validation_failed");
    expect(faultWindow("payments")).toBeUndefined();

    const open = await callWithFaults("/v1/admin/faults", {
      method: "PUT",
      token: admin,
      json: { name: "inventory_slow", seconds: 5, delayMs: 7 },
    });
    expect(open.status).toBe(200);
    const { faults } = (await open.json()) as { faults: Record<string, { until: string; delayMs?: number }> };
    expect(faults.inventory_slow?.delayMs).toBe(7);
    expect(Date.parse(faults.inventory_slow?.until ?? "")).toBeGreaterThan(Date.now());
    expect(faultWindow("inventory_slow")?.delayMs).toBe(7);

    const closed = await callWithFaults("/v1/admin/faults", { method: "PUT", token: admin, json: { name: "inventory_slow", seconds: 0 } });
    expect(((await closed.json()) as { faults: Record<string, unknown> }).faults).toEqual({});
    expect(faultWindow("inventory_slow")).toBeUndefined();
  });
});

describe("injection points", () => {
  const holdFor = async (token: string) => {
    const res = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: { sectionId: "floor", quantity: 1 } });
    expect(res.status).toBe(201);
    return ((await res.json()) as { hold: { id: string } }).hold.id;
  };
  const pay = (token: string, holdId: string) =>
    call("/v1/orders", { method: "POST", token, json: { holdId, payment: { method: "sandbox", token: "tok_ok" } } });

  it("payments: a charge during the outage is refused with 503 and Retry-After, charges nothing, and works after it", async () => {
    const t = await tokenFor("rehearsal-pay-1");
    const holdId = await holdFor(t);
    setFault("payments", { until: Date.now() + 60_000 });
    const res = await pay(t, holdId);
    expect(res.status).toBe(503);
    expect(((await res.json()) as Problem).code).toBe("overloaded");
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThan(0);
    expect(sandboxLedger()).toEqual([]);
    clearFaults();
    resetBreakers();
    const again = await pay(t, holdId);
    expect(again.status).toBe(201);
    expect(sandboxLedger()).toMatchObject([{ status: "succeeded" }]);
  });

  it("shard_writes: the shard refuses writes while the window is open", async () => {
    const store = new D1OrderStore("SHARD_0", env.SHARD_0);
    const tag = freshTag();
    const msg = orderMsg(`${tag}-buyer`, 1, {}, tag);
    setFault("shard_writes", { until: Date.now() + 60_000 });
    await expect(store.saveOrder(msg)).rejects.toThrow(/injected fault: shard_writes/);
    expect(await store.getOrder(msg.orderId)).toBeNull();
    clearFaults();
    expect(await store.saveOrder(msg)).toBe("inserted");
  });

  it("shard_slow: each shard write takes the window's delay, one at a time per shard, then succeeds", async () => {
    const slow = new D1OrderStore("SHARD_1", env.SHARD_1);
    const other = new D1OrderStore("SHARD_0", env.SHARD_0);
    const tag = freshTag();
    const msgs = [1, 2, 3].map((n) => orderMsg(`${tag}-${n}`, n, {}, tag));
    setFault("shard_slow", { until: Date.now() + 60_000, delayMs: 200 });
    const t0 = Date.now();
    // Three writes to one shard side by side take three delays; a write to another shard, one.
    const [a, b, c, d] = await Promise.all([
      slow.saveOrders([msgs[0] as OrderMessage]).then(() => Date.now() - t0),
      slow.saveOrders([msgs[1] as OrderMessage]).then(() => Date.now() - t0),
      slow.saveOrders([msgs[2] as OrderMessage]).then(() => Date.now() - t0),
      other.saveOrders([orderMsg(`${tag}-4`, 4, {}, tag)]).then(() => Date.now() - t0),
    ]);
    expect(Math.max(a, b, c)).toBeGreaterThanOrEqual(600);
    expect(d).toBeGreaterThanOrEqual(200);
    clearFaults();
    expect(await slow.saveOrder(msgs[0] as OrderMessage)).toBe("exists");
  });

  it("inventory_slow: concurrent holds on one object queue behind its stall", async () => {
    const tokens = await Promise.all(Array.from({ length: 6 }, (_, i) => tokenFor(`rehearsal-slow-${i}`)));
    const time = async () => {
      const t0 = Date.now();
      await Promise.all(
        tokens.map((t) => call(`/v1/events/${ev.id}/holds`, { method: "POST", token: t, json: { sectionId: "a", quantity: 1 } })),
      );
      return Date.now() - t0;
    };
    setFault("inventory_slow", { until: Date.now() + 60_000, delayMs: 150 });
    // Six holds on the one seated object: each after the first waits out the stall of the one before.
    expect(await time()).toBeGreaterThanOrEqual(5 * 150);
  });
});

describe("GET /v1/admin/payments/sandbox/charges", () => {
  it("lists every charge from the durable ledger, also after the isolate forgot them, and a void after that refunds it", async () => {
    const t = await tokenFor(`rehearsal-ledger-${freshTag()}`);
    const holdId = await holdFor2(t);
    const paid = await call("/v1/orders", { method: "POST", token: t, json: { holdId, payment: { method: "sandbox", token: "tok_ok" } } });
    expect(paid.status).toBe(201);
    const { order } = (await paid.json()) as { order: { id: string; total: number } };
    resetSandbox(); // as after a restart: the isolate's memory is gone
    expect((await call("/v1/admin/payments/sandbox/charges", { token: buyer })).status).toBe(403);
    const res = await call("/v1/admin/payments/sandbox/charges", { token: admin });
    expect(res.status).toBe(200);
    const { charges } = (await res.json()) as { charges: SandboxCharge[] };
    const mine = charges.filter((c) => c.idempotencyKey.startsWith(`${order.id}:`));
    expect(mine).toMatchObject([{ status: "succeeded", amount: order.total, currency: "EUR" }]);
    expect(Date.parse(mine[0]?.chargedAt ?? "")).toBeGreaterThan(0);

    resetSandbox();
    const provider = paymentProvider("sandbox", env);
    expect(await provider?.voidCharge(mine[0]?.idempotencyKey ?? "")).toMatchObject({ refunded: true });
    const after = (await (await call("/v1/admin/payments/sandbox/charges", { token: admin })).json()) as { charges: SandboxCharge[] };
    expect(after.charges.filter((c) => c.idempotencyKey === mine[0]?.idempotencyKey)).toMatchObject([{ status: "refunded" }]);
  });
});

async function holdFor2(token: string): Promise<string> {
  const res = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: { sectionId: "floor", quantity: 2 } });
  expect(res.status).toBe(201);
  return ((await res.json()) as { hold: { id: string } }).hold.id;
}

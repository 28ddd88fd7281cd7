import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { CustomerLedger } from "../../durable-objects/customer-ledger";
import { ledgerStub } from "../../lib/holds";
import { resetBreakers, resetSandbox, sandboxLedger } from "../../lib/payments";
import { ApiError } from "../../lib/problem";
import { idempotency } from "../../workers/middleware/idempotency";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";
import { send, tinyApp, userFromHeader } from "./tiny-app";

let seq = 0;
const unique = (p: string) => `${p}-${seq++}-${crypto.randomUUID().slice(0, 8)}`;

/** What the stand-in handlers do on their next run. */
type Behaviour = "ok" | "500" | "throw" | "404" | { wait: Promise<void> };

/**
 * A buyer signed in from `X-User`, then idempotency(), then handlers that count their runs and answer a
 * body naming the run, so a replay is told apart from a second run.
 */
function app() {
  const runs: string[] = [];
  const plan: Behaviour[] = [];
  const a = tinyApp();
  a.use("*", userFromHeader);
  a.use("*", idempotency());
  a.post("/orders", async (c) => {
    const body = (await c.req.json()) as { item: string };
    runs.push(`${c.get("principal").sub}:${body.item}`);
    const behaviour = plan.shift() ?? "ok";
    if (behaviour === "500") return c.json({ error: "down" }, 500);
    if (behaviour === "throw") throw new Error("dependency failed");
    if (behaviour === "404") throw new ApiError("not_found", "no such item");
    if (typeof behaviour === "object") await behaviour.wait;
    c.header("Location", `/orders/${runs.length}`);
    return c.json({ order: { run: runs.length, item: body.item } }, 201);
  });
  a.delete("/orders/:id", (c) => {
    runs.push(`delete:${c.req.param("id")}`);
    return c.body(null, 204);
  });
  return { a, runs, plan };
}

const order = (user: string, key: string | undefined, item = "tee") =>
  ({
    method: "POST",
    headers: { "X-User": user, "Content-Type": "application/json", ...(key === undefined ? {} : { "Idempotency-Key": key }) },
    body: JSON.stringify({ item }),
  }) as const;

/** The ledger's idempotency row for `key` of `user`. */
const recordOf = (user: string, key: string) =>
  runInDurableObject(ledgerStub(env.CUSTOMER_LEDGER, user), (_: CustomerLedger, state) =>
    state.storage.sql.exec<{ state: string; status: number | null }>("SELECT state, status FROM idempotency WHERE key = ?", key).toArray(),
  );

async function expectProblem(res: Response, status: number, code: string): Promise<Problem> {
  expect(res.status).toBe(status);
  const p = (await res.json()) as Problem;
  expect(p.code).toBe(code);
  return p;
}

describe("idempotency: keys", () => {
  it("runs every request without a key, and stores nothing", async () => {
    const { a, runs } = app();
    const user = unique("idem-none");
    for (let i = 0; i < 3; i++) expect((await send(a, "/orders", order(user, undefined))).status).toBe(201);
    expect(runs).toHaveLength(3);
    const rows = await runInDurableObject(ledgerStub(env.CUSTOMER_LEDGER, user), (_: CustomerLedger, state) =>
      state.storage.sql.exec("SELECT * FROM idempotency").toArray(),
    );
    expect(rows).toEqual([]);
  });

  it("refuses empty, over-long, spaced, control and non-ASCII keys with 400, running nothing", async () => {
    const { a, runs } = app();
    const user = unique("idem-bad");
    expect((await send(a, "/orders", order(user, "k".repeat(255)))).status).toBe(201);
    for (const key of ["", "k".repeat(256), "two words", "tab\there", "ключ", "key\u00a0nbsp"]) {
      const p = await expectProblem(await send(a, "/orders", order(user, key)), 400, "validation_failed");
      expect(p.errors, JSON.stringify(key)).toEqual([{ path: "Idempotency-Key", message: "invalid" }]);
    }
    expect(runs).toHaveLength(1);
  });
});

describe("idempotency: replay and mismatch", () => {
  it("replays the first response (status, body, type) with Idempotency-Replayed, running the handler once", async () => {
    const { a, runs } = app();
    const user = unique("idem-replay");
    const key = unique("key");
    const first = await send(a, "/orders", order(user, key));
    expect(first.status).toBe(201);
    const firstBody = await first.text();
    expect(first.headers.has("Idempotency-Replayed")).toBe(false);
    for (let i = 0; i < 3; i++) {
      const again = await send(a, "/orders", order(user, key));
      expect(again.status).toBe(201);
      expect(again.headers.get("Idempotency-Replayed")).toBe("true");
      expect(again.headers.get("Content-Type")).toBe(first.headers.get("Content-Type"));
      expect(await again.text()).toBe(firstBody);
    }
    expect(runs).toEqual([`${user}:tee`]);
    expect(await recordOf(user, key)).toEqual([{ state: "done", status: 201 }]);
  });

  it("repeats the first answer's Location on a replay, but not per-request headers", async () => {
    const { a } = app();
    const user = unique("idem-location");
    const key = unique("key");
    const first = await send(a, "/orders", order(user, key));
    expect(first.headers.get("Location")).toBe("/orders/1");
    const again = await send(a, "/orders", order(user, key));
    expect(again.headers.get("Location")).toBe("/orders/1");
    expect(again.headers.has("X-Request-Id")).toBe(false);
  });

  it("replays a 204 without a body", async () => {
    const { a, runs } = app();
    const user = unique("idem-204");
    const key = unique("key");
    const del = { method: "DELETE", headers: { "X-User": user, "Idempotency-Key": key } };
    expect((await send(a, "/orders/o1", del)).status).toBe(204);
    const again = await send(a, "/orders/o1", del);
    expect(again.status).toBe(204);
    expect(again.headers.get("Idempotency-Replayed")).toBe("true");
    expect(await again.text()).toBe("");
    expect(runs).toEqual(["delete:o1"]);
  });

  it("answers 422 idempotency_mismatch for another body or another path under the same key, running nothing", async () => {
    const { a, runs } = app();
    const user = unique("idem-mismatch");
    const key = unique("key");
    expect((await send(a, "/orders", order(user, key, "tee"))).status).toBe(201);
    await expectProblem(await send(a, "/orders", order(user, key, "mug")), 422, "idempotency_mismatch");
    await expectProblem(
      await send(a, "/orders/o9", { method: "DELETE", headers: { "X-User": user, "Idempotency-Key": key } }),
      422,
      "idempotency_mismatch",
    );
    expect(runs).toEqual([`${user}:tee`]);
    // The stored answer is untouched: the original request still replays.
    const replay = await send(a, "/orders", order(user, key, "tee"));
    expect(replay.headers.get("Idempotency-Replayed")).toBe("true");
    expect(await replay.json()).toEqual({ order: { run: 1, item: "tee" } });
  });

  it("scopes keys to the buyer: another buyer's request under the same key runs", async () => {
    const { a, runs } = app();
    const key = unique("shared-key");
    const [alice, bob] = [unique("idem-alice"), unique("idem-bob")];
    expect((await send(a, "/orders", order(alice, key, "tee"))).status).toBe(201);
    const other = await send(a, "/orders", order(bob, key, "mug"));
    expect(other.status).toBe(201);
    expect(other.headers.has("Idempotency-Replayed")).toBe(false);
    expect(runs).toEqual([`${alice}:tee`, `${bob}:mug`]);
  });

  it("stores and replays a 4xx answer like any other", async () => {
    const { a, runs, plan } = app();
    const user = unique("idem-4xx");
    const key = unique("key");
    plan.push("404");
    await expectProblem(await send(a, "/orders", order(user, key)), 404, "not_found");
    const again = await send(a, "/orders", order(user, key));
    expect(again.headers.get("Idempotency-Replayed")).toBe("true");
    expect(again.headers.get("Content-Type")).toBe("application/problem+json");
    await expectProblem(again, 404, "not_found");
    expect(runs).toHaveLength(1);
  });
});

describe("idempotency: in flight and failures", () => {
  it("answers 409 idempotency_conflict with Retry-After while the first request runs, then replays it", async () => {
    const { a, runs, plan } = app();
    const user = unique("idem-inflight");
    const key = unique("key");
    let open = () => {};
    plan.push({ wait: new Promise<void>((r) => (open = r)) });
    const first = send(a, "/orders", order(user, key));
    // Wait until the first request reached its handler (the key is in flight).
    while (runs.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(await recordOf(user, key)).toEqual([{ state: "in_flight", status: null }]);
    const dupes = await Promise.all(Array.from({ length: 5 }, () => send(a, "/orders", order(user, key))));
    for (const d of dupes) {
      expect(d.headers.get("Retry-After")).toBe("1");
      await expectProblem(d, 409, "idempotency_conflict");
    }
    open();
    expect((await first).status).toBe(201);
    const after = await send(a, "/orders", order(user, key));
    expect(after.headers.get("Idempotency-Replayed")).toBe("true");
    expect(runs).toHaveLength(1);
  });

  it("lets exactly one of many concurrent first requests under one key run", async () => {
    const { a, runs } = app();
    const user = unique("idem-race");
    const key = unique("key");
    const results = await Promise.all(Array.from({ length: 20 }, () => send(a, "/orders", order(user, key))));
    const statuses = results.map((r) => r.status);
    expect(runs).toHaveLength(1);
    // The one that ran answered 201; the others either saw it in flight (409) or replayed it (201).
    expect(statuses.filter((s) => s === 201).length + statuses.filter((s) => s === 409).length).toBe(20);
    expect(results.filter((r) => r.status === 201 && !r.headers.has("Idempotency-Replayed"))).toHaveLength(1);
  });

  it("does not store a 5xx or a thrown error: the same request runs again under the key, another is 422", async () => {
    const { a, runs, plan } = app();
    const user = unique("idem-5xx");
    const key = unique("key");
    plan.push("500", "throw");
    expect((await send(a, "/orders", order(user, key))).status).toBe(500);
    expect(await recordOf(user, key)).toEqual([{ state: "in_flight", status: 500 }]);
    await expectProblem(await send(a, "/orders", order(user, key, "mug")), 422, "idempotency_mismatch");
    const thrown = await send(a, "/orders", order(user, key));
    await expectProblem(thrown, 500, "internal_error");
    expect(await recordOf(user, key)).toEqual([{ state: "in_flight", status: 500 }]);
    const ok = await send(a, "/orders", order(user, key));
    expect(ok.status).toBe(201);
    expect(ok.headers.has("Idempotency-Replayed")).toBe(false);
    expect(runs).toHaveLength(3);
    expect(await recordOf(user, key)).toEqual([{ state: "done", status: 201 }]);
  });
});

// On the real routes: behaviour that needs the hold and order routes and the sandbox provider.
let ev: EventBody;
beforeAll(async () => {
  ev = await createEvent(await tokenFor("org-idem", "organizer"), { perCustomerLimit: 10 });
});
beforeEach(() => {
  resetSandbox();
  resetBreakers();
});

async function holdFor(token: string): Promise<string> {
  const res = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: { sectionId: "floor", quantity: 1 } });
  expect(res.status).toBe(201);
  return ((await res.json()) as { hold: { id: string } }).hold.id;
}
const pay = (token: string, holdId: string, tok: string, key: string) =>
  call("/v1/orders", {
    method: "POST",
    token,
    json: { holdId, payment: { method: "sandbox", token: tok } },
    headers: { "Idempotency-Key": key },
  });

describe("Idempotency-Key after a 5xx", () => {
  it("keeps the key's fingerprint: another body under it is 422, the same body may run again", async () => {
    const t = await tokenFor("idem-5xx", "buyer");
    const holdId = await holdFor(t);
    const failed = await pay(t, holdId, "tok_error", "k-5xx");
    expect(failed.status).toBe(503);
    expect(((await failed.json()) as Problem).code).toBe("overloaded");

    const other = await pay(t, holdId, "tok_ok", "k-5xx");
    expect(other.status).toBe(422);
    expect(((await other.json()) as Problem).code).toBe("idempotency_mismatch");
    expect(sandboxLedger()).toEqual([]);

    // The same request is not replayed (a 5xx is not stored) and not refused as in flight: it runs again.
    const again = await pay(t, holdId, "tok_error", "k-5xx");
    expect(again.status).toBe(503);
    expect(again.headers.get("Idempotency-Replayed")).toBeNull();
    expect(((await again.json()) as Problem).code).toBe("overloaded");

    // A new key takes the corrected request.
    const fixed = await pay(t, holdId, "tok_ok", "k-5xx-2");
    expect(fixed.status).toBe(201);
    expect(sandboxLedger().filter((c) => c.status === "succeeded")).toHaveLength(1);
  });
});

describe("replayed answers", () => {
  it("repeat the first answer's Location, status and body (orders and holds)", async () => {
    const t = await tokenFor("idem-loc", "buyer");
    const holdRes = () =>
      call(`/v1/events/${ev.id}/holds`, {
        method: "POST",
        token: t,
        json: { sectionId: "a", seats: ["1-3"] },
        headers: { "Idempotency-Key": "h-loc" },
      });
    const firstHold = await holdRes();
    expect(firstHold.status).toBe(201);
    const holdBody = await firstHold.text();
    const holdId = (JSON.parse(holdBody) as { hold: { id: string } }).hold.id;
    expect(firstHold.headers.get("Location")).toBe(`/v1/holds/${holdId}`);
    const replayHold = await holdRes();
    expect(replayHold.status).toBe(201);
    expect(replayHold.headers.get("Idempotency-Replayed")).toBe("true");
    expect(replayHold.headers.get("Location")).toBe(`/v1/holds/${holdId}`);
    expect(await replayHold.text()).toBe(holdBody);

    const first = await pay(t, holdId, "tok_ok", "o-loc");
    expect(first.status).toBe(201);
    const location = first.headers.get("Location");
    expect(location).toMatch(/^\/v1\/orders\/ord_/);
    const body = await first.text();
    const replay = await pay(t, holdId, "tok_ok", "o-loc");
    expect(replay.status).toBe(201);
    expect(replay.headers.get("Idempotency-Replayed")).toBe("true");
    expect(replay.headers.get("Location")).toBe(location);
    expect(replay.headers.get("Content-Type")).toBe(first.headers.get("Content-Type"));
    expect(await replay.text()).toBe(body);
    expect(sandboxLedger()).toHaveLength(1);
  });
});

import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  type CustomerLedger,
  IDEMPOTENCY_IN_FLIGHT_TTL_MS,
  IDEMPOTENCY_TTL_MS,
  type LedgerState,
  RESERVATION_SLACK_MS,
} from "../../durable-objects/customer-ledger";
import { ledgerStub, reservationKey } from "../../lib/holds";
import { resetBreakers, resetSandbox } from "../../lib/payments";
import { call, createEvent, type Problem, tokenFor } from "../helpers";

let n = 0;
const unique = (p: string) => `${p}-${n++}-${crypto.randomUUID().slice(0, 8)}`;
/** A fresh buyer's ledger (storage persists across the tests of this file). */
const fresh = () => ledgerStub(env.CUSTOMER_LEDGER, unique("ledger-buyer"));
type Ledger = ReturnType<typeof fresh>;

const inTenMinutes = () => Date.now() + 600_000;

type Row = {
  hold_id: string;
  event_id: string;
  quantity: number;
  state: LedgerState;
  expires_at: number;
};
const rowsOf = (ledger: Ledger) =>
  runInDurableObject(ledger, (_: CustomerLedger, state) =>
    state.storage.sql.exec<Row>("SELECT hold_id, event_id, quantity, state, expires_at FROM reservations ORDER BY hold_id").toArray(),
  );
const sql = (ledger: Ledger, query: string, ...params: (string | number)[]) =>
  runInDurableObject(ledger, (_: CustomerLedger, state) => {
    state.storage.sql.exec(query, ...params);
  });

describe("CustomerLedger: the per-customer limit", () => {
  it("grants reservations up to the limit and refuses the one that would pass it, changing nothing", async () => {
    const ledger = fresh();
    expect(await ledger.reserve("ev1", "h1", 2, 4, inTenMinutes())).toEqual({ ok: true, value: { used: 2, limit: 4 } });
    expect(await ledger.reserve("ev1", "h2", 2, 4, inTenMinutes())).toEqual({ ok: true, value: { used: 4, limit: 4 } });
    const refused = await ledger.reserve("ev1", "h3", 1, 4, inTenMinutes());
    expect(refused).toMatchObject({ ok: false, code: "limit_exceeded" });
    expect(refused.ok ? "" : refused.detail).toContain("4 places per customer; you have 4");
    expect(await ledger.usage("ev1")).toBe(4);
    expect((await rowsOf(ledger)).map((r) => r.hold_id)).toEqual(["h1", "h2"]);
  });

  it("counts holds of every section and shard of one event together, and other events apart", async () => {
    const ledger = fresh();
    // Hold ids as placeHold makes them: the reservation key is the same whichever shard takes the hold.
    expect(reservationKey("hAAA.floor.0")).toBe(reservationKey("hAAA.floor.1"));
    for (const [holdId, qty] of [
      ["hAAA", 1],
      ["hBBB", 2],
      ["hCCC", 1],
    ] as const)
      expect((await ledger.reserve("ev-a", holdId, qty, 4, inTenMinutes())).ok).toBe(true);
    expect((await ledger.reserve("ev-a", "hDDD", 1, 4, inTenMinutes())).ok).toBe(false);
    expect((await ledger.reserve("ev-b", "hEEE", 4, 4, inTenMinutes())).ok).toBe(true);
    expect([await ledger.usage("ev-a"), await ledger.usage("ev-b"), await ledger.usage("ev-c")]).toEqual([4, 4, 0]);
  });

  it("treats a second reserve of the same hold as the first (a retried call counts once)", async () => {
    const ledger = fresh();
    expect(await ledger.reserve("ev1", "h1", 3, 4, inTenMinutes())).toEqual({ ok: true, value: { used: 3, limit: 4 } });
    expect(await ledger.reserve("ev1", "h1", 3, 4, inTenMinutes())).toEqual({ ok: true, value: { used: 3, limit: 4 } });
    expect(await ledger.usage("ev1")).toBe(3);
    expect(await rowsOf(ledger)).toHaveLength(1);
  });

  it("keeps each buyer's ledger apart", async () => {
    const [a, b] = [fresh(), fresh()];
    expect((await a.reserve("ev1", "h1", 4, 4, inTenMinutes())).ok).toBe(true);
    expect((await b.reserve("ev1", "h2", 4, 4, inTenMinutes())).ok).toBe(true);
    expect([await a.usage("ev1"), await b.usage("ev1")]).toEqual([4, 4]);
  });
});

describe("CustomerLedger: a reservation follows its hold", () => {
  it("counts held, checking_out and sold, and frees released places for another hold", async () => {
    const ledger = fresh();
    await ledger.reserve("ev1", "h1", 2, 4, inTenMinutes());
    await ledger.reserve("ev1", "h2", 2, 4, inTenMinutes());
    await ledger.setState("h1", "checking_out");
    expect(await ledger.usage("ev1")).toBe(4);
    await ledger.setState("h1", "sold");
    expect(await ledger.usage("ev1")).toBe(4);
    await ledger.setState("h2", "released");
    expect(await ledger.usage("ev1")).toBe(2);
    expect((await ledger.reserve("ev1", "h3", 2, 4, inTenMinutes())).ok).toBe(true);
    expect((await rowsOf(ledger)).map((r) => [r.hold_id, r.state])).toEqual([
      ["h1", "sold"],
      ["h2", "released"],
      ["h3", "held"],
    ]);
  });

  it("never lapses places in checkout or sold, though their hold's time has passed", async () => {
    const ledger = fresh();
    await ledger.reserve("ev1", "h1", 1, 4, inTenMinutes());
    await ledger.reserve("ev1", "h2", 1, 4, inTenMinutes());
    await ledger.setState("h1", "checking_out");
    await ledger.setState("h2", "sold");
    await sql(ledger, "UPDATE reservations SET expires_at = ?", Date.now() - 1);
    expect(await ledger.usage("ev1")).toBe(2);
    expect(await runDurableObjectAlarm(ledger)).toBe(true);
    expect((await rowsOf(ledger)).map((r) => r.state)).toEqual(["checking_out", "sold"]);
  });

  it("gives a failed checkout back its hold's new expiry (plus the slack)", async () => {
    const ledger = fresh();
    await ledger.reserve("ev1", "h1", 1, 4, inTenMinutes());
    await ledger.setState("h1", "checking_out");
    const reopenedUntil = Date.now() + 120_000;
    await ledger.setState("h1", "held", reopenedUntil);
    const [row] = await rowsOf(ledger);
    expect(row).toMatchObject({ state: "held", expires_at: reopenedUntil + RESERVATION_SLACK_MS });
    expect(await ledger.usage("ev1")).toBe(1);
  });

  it("lets a reservation whose hold call never finished lapse by itself after the hold's time and the slack", async () => {
    const ledger = fresh();
    const holdExpiry = inTenMinutes();
    expect((await ledger.reserve("ev1", "orphan", 4, 4, holdExpiry)).ok).toBe(true);
    const [row] = await rowsOf(ledger);
    expect(row).toMatchObject({ state: "held", expires_at: holdExpiry + RESERVATION_SLACK_MS });
    expect((await ledger.reserve("ev1", "h2", 1, 4, inTenMinutes())).ok).toBe(false);
    // Time passes: the hold's lifetime and the slack are over, and nobody confirmed or released it.
    await sql(ledger, "UPDATE reservations SET expires_at = ? WHERE hold_id = 'orphan'", Date.now() - 1);
    expect(await ledger.usage("ev1")).toBe(0);
    expect((await ledger.reserve("ev1", "h2", 4, 4, inTenMinutes())).ok).toBe(true);
  });

  it("cleans up lapsed and released reservations in its alarm, and stops the alarm when nothing is left", async () => {
    const ledger = fresh();
    await ledger.reserve("ev1", "lapsed", 1, 9, inTenMinutes());
    await ledger.reserve("ev1", "released", 1, 9, inTenMinutes());
    await ledger.reserve("ev1", "live", 1, 9, inTenMinutes());
    await ledger.setState("released", "released");
    await sql(ledger, "UPDATE reservations SET expires_at = ? WHERE hold_id IN ('lapsed', 'released')", Date.now() - 1);
    // reserve() scheduled the cleanup alarm.
    await expect.poll(() => runInDurableObject(ledger, (_: CustomerLedger, state) => state.storage.getAlarm())).not.toBeNull();
    expect(await runDurableObjectAlarm(ledger)).toBe(true);
    expect((await rowsOf(ledger)).map((r) => r.hold_id)).toEqual(["live"]);
    // Something is still pending: another alarm is set, about an hour out.
    const next = await runInDurableObject(ledger, (_: CustomerLedger, state) => state.storage.getAlarm());
    expect(next).toBeGreaterThan(Date.now() + 3_500_000);
    await ledger.setState("live", "sold");
    expect(await runDurableObjectAlarm(ledger)).toBe(true);
    expect(await runInDurableObject(ledger, (_: CustomerLedger, state) => state.storage.getAlarm())).toBeNull();
    // A later reserve schedules the cleanup again.
    await ledger.reserve("ev1", "again", 1, 9, inTenMinutes());
    // reserve() sets the alarm without waiting for it (off the hot path): give it a moment.
    await expect.poll(() => runInDurableObject(ledger, (_: CustomerLedger, state) => state.storage.getAlarm())).not.toBeNull();
  });
});

describe("CustomerLedger: idempotency records", () => {
  it("begins a key as new, then reports it in flight to a second caller with the same request", async () => {
    const ledger = fresh();
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual({ kind: "new" });
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual({ kind: "in_flight" });
  });

  it("replays a completed key with its status, body, content type and stored headers", async () => {
    const ledger = fresh();
    await ledger.beginIdempotent("k1", "fp-a");
    await ledger.completeIdempotent("k1", 201, '{"hold":{"id":"h1"}}', "application/json; charset=UTF-8", [["Location", "/v1/holds/h1"]]);
    const replay = {
      kind: "replay",
      status: 201,
      body: '{"hold":{"id":"h1"}}',
      contentType: "application/json; charset=UTF-8",
      headers: [["Location", "/v1/holds/h1"]],
    };
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual(replay);
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual(replay);
    await ledger.beginIdempotent("k2", "fp-a");
    await ledger.completeIdempotent("k2", 204, "", "application/json");
    expect(await ledger.beginIdempotent("k2", "fp-a")).toMatchObject({ kind: "replay", status: 204, headers: [] });
  });

  it("reports a mismatch for another request under the key, in flight or completed, and keeps the first", async () => {
    const ledger = fresh();
    await ledger.beginIdempotent("k1", "fp-a");
    expect(await ledger.beginIdempotent("k1", "fp-b")).toEqual({ kind: "mismatch" });
    await ledger.completeIdempotent("k1", 200, "{}", "application/json");
    expect(await ledger.beginIdempotent("k1", "fp-b")).toEqual({ kind: "mismatch" });
    expect(await ledger.beginIdempotent("k1", "fp-a")).toMatchObject({ kind: "replay", status: 200 });
  });

  it("lets the same request retry an abandoned (failed) key at once, keeps its fingerprint, and never abandons a completed one", async () => {
    const ledger = fresh();
    await ledger.beginIdempotent("k1", "fp-a");
    await ledger.abandonIdempotent("k1", 503);
    expect(await ledger.beginIdempotent("k1", "fp-b")).toEqual({ kind: "mismatch" });
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual({ kind: "new" });
    // Running again: in flight once more, until it completes.
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual({ kind: "in_flight" });
    await ledger.completeIdempotent("k1", 201, "{}", "application/json");
    await ledger.abandonIdempotent("k1", 500);
    expect(await ledger.beginIdempotent("k1", "fp-a")).toMatchObject({ kind: "replay", status: 201 });
  });

  it("presumes an in-flight key older than its TTL dead, and lets a completed one go after a day", async () => {
    const ledger = fresh();
    await ledger.beginIdempotent("stuck", "fp-a");
    await sql(ledger, "UPDATE idempotency SET created_at = ? WHERE key = 'stuck'", Date.now() - IDEMPOTENCY_IN_FLIGHT_TTL_MS - 1);
    expect(await ledger.beginIdempotent("stuck", "fp-a")).toEqual({ kind: "new" });

    await ledger.beginIdempotent("old", "fp-a");
    await ledger.completeIdempotent("old", 201, "{}", "application/json");
    await sql(ledger, "UPDATE idempotency SET created_at = ? WHERE key = 'old'", Date.now() - IDEMPOTENCY_IN_FLIGHT_TTL_MS - 1);
    expect(await ledger.beginIdempotent("old", "fp-a")).toMatchObject({ kind: "replay" });
    await sql(ledger, "UPDATE idempotency SET created_at = ? WHERE key = 'old'", Date.now() - IDEMPOTENCY_TTL_MS - 1);
    // Past a day the key is free again, for any request.
    expect(await ledger.beginIdempotent("old", "fp-other")).toEqual({ kind: "new" });
  });

  it("deletes records older than a day in its alarm and keeps younger ones", async () => {
    const ledger = fresh();
    for (const key of ["young", "aged"]) {
      await ledger.beginIdempotent(key, "fp");
      await ledger.completeIdempotent(key, 201, "{}", "application/json");
    }
    await sql(ledger, "UPDATE idempotency SET created_at = ? WHERE key = 'aged'", Date.now() - IDEMPOTENCY_TTL_MS - 1);
    expect(await runDurableObjectAlarm(ledger)).toBe(true);
    const keys = await runInDurableObject(ledger, (_: CustomerLedger, state) =>
      state.storage.sql
        .exec<{ key: string }>("SELECT key FROM idempotency")
        .toArray()
        .map((r) => r.key),
    );
    expect(keys).toEqual(["young"]);
  });
});

describe("CustomerLedger: concurrency", () => {
  it("grants exactly the limit to many concurrent reserve calls", async () => {
    const ledger = fresh();
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => ledger.reserve("ev1", `h${i}`, 1, 4, inTenMinutes())));
    expect(results.filter((r) => r.ok)).toHaveLength(4);
    for (const r of results.filter((r) => !r.ok)) expect(r).toMatchObject({ code: "limit_exceeded" });
    expect(await ledger.usage("ev1")).toBe(4);
    expect(await rowsOf(ledger)).toHaveLength(4);
    // The granted calls saw the count grow one by one, never past the limit.
    expect(
      results
        .filter((r) => r.ok)
        .map((r) => (r.ok ? r.value.used : 0))
        .sort(),
    ).toEqual([1, 2, 3, 4]);
  });

  it("never passes the limit with concurrent calls of mixed sizes", async () => {
    const ledger = fresh();
    const sizes = Array.from({ length: 40 }, (_, i) => 1 + (i % 3));
    const results = await Promise.all(sizes.map((q, i) => ledger.reserve("ev1", `m${i}`, q, 10, inTenMinutes())));
    const granted = sizes.filter((_, i) => results[i]?.ok).reduce((a, b) => a + b, 0);
    expect(await ledger.usage("ev1")).toBe(granted);
    expect(granted).toBeLessThanOrEqual(10);
    // The smallest request (1) was refused only once nothing at all was left.
    if (results.some((r, i) => !r.ok && sizes[i] === 1)) expect(granted).toBe(10);
  });

  it("lets exactly one of many concurrent first uses of a key begin", async () => {
    const ledger = fresh();
    const begins = await Promise.all(Array.from({ length: 30 }, () => ledger.beginIdempotent("race", "fp")));
    expect(begins.filter((b) => b.kind === "new")).toHaveLength(1);
    expect(begins.filter((b) => b.kind === "in_flight")).toHaveLength(29);
  });
});

describe("CustomerLedger behind the routes", () => {
  let organizer: string;
  beforeAll(async () => {
    organizer = await tokenFor("org-ledger", "organizer");
  });
  beforeEach(() => {
    resetSandbox();
    resetBreakers();
  });

  it("records each hold (GA shard or seats) as one reservation and moves it with checkout and release", async () => {
    const ev = await createEvent(organizer, { perCustomerLimit: 5 });
    const user = unique("ledger-route");
    const token = await tokenFor(user, "buyer");
    const hold = async (body: unknown) => {
      const res = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: body });
      expect(res.status).toBe(201);
      return ((await res.json()) as { hold: { id: string } }).hold.id;
    };
    const ga = await hold({ sectionId: "floor", quantity: 2 });
    const seated = await hold({ sectionId: "a", seats: ["1-1", "1-2"] });
    const ledger = ledgerStub(env.CUSTOMER_LEDGER, user);
    const stateOf = async (holdId: string) => (await rowsOf(ledger)).find((r) => r.hold_id === reservationKey(holdId));
    expect(await stateOf(ga)).toMatchObject({ event_id: ev.id, quantity: 2, state: "held" });
    expect(await stateOf(seated)).toMatchObject({ event_id: ev.id, quantity: 2, state: "held" });
    expect(await ledger.usage(ev.id)).toBe(4);
    // 4 of 5 used: two more places in either section are refused.
    const over = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: { sectionId: "floor", quantity: 2 } });
    expect(over.status).toBe(422);
    expect(((await over.json()) as Problem).code).toBe("limit_exceeded");
    expect(await rowsOf(ledger)).toHaveLength(2);

    const paid = await call("/v1/orders", {
      method: "POST",
      token,
      json: { holdId: seated, payment: { method: "sandbox", token: "tok_ok" } },
    });
    expect(paid.status).toBe(201);
    expect((await stateOf(seated))?.state).toBe("sold");
    expect((await call(`/v1/holds/${ga}`, { method: "DELETE", token })).status).toBe(204);
    expect((await stateOf(ga))?.state).toBe("released");
    expect(await ledger.usage(ev.id)).toBe(2);
    expect((await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: { sectionId: "floor", quantity: 3 } })).status).toBe(
      201,
    );
    expect(await ledger.usage(ev.id)).toBe(5);
  });

  it("puts a declined checkout's reservation back to held", async () => {
    const ev = await createEvent(organizer, { perCustomerLimit: 2 });
    const user = unique("ledger-decline");
    const token = await tokenFor(user, "buyer");
    const res = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: { sectionId: "floor", quantity: 2 } });
    const holdId = ((await res.json()) as { hold: { id: string } }).hold.id;
    const declined = await call("/v1/orders", {
      method: "POST",
      token,
      json: { holdId, payment: { method: "sandbox", token: "tok_decline" } },
    });
    expect(declined.status).toBe(402);
    const [row] = await rowsOf(ledgerStub(env.CUSTOMER_LEDGER, user));
    expect(row).toMatchObject({ state: "held", quantity: 2 });
    expect(row?.expires_at).toBeGreaterThan(Date.now());
  });
});

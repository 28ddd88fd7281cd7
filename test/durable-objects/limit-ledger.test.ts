import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type LedgerState, type LimitLedger, RESERVATION_SLACK_MS } from "../../durable-objects/limit-ledger";
import { limitBuckets, limitStub } from "../../lib/holds";
import { resetBreakers, resetSandbox } from "../../lib/payments";
import { call, createEvent, type Problem, tokenFor } from "../helpers";

let n = 0;
const unique = (p: string) => `${p}-${n++}-${crypto.randomUUID().slice(0, 8)}`;
const ONE_SECTION = [{ id: "floor", kind: "ga", capacity: 100, shards: 1 }];
type Stub = ReturnType<typeof limitStub>;

/**
 * One buyer's side of an event's LimitLedger bucket (storage persists across the tests of this file, so
 * each test takes a fresh event, or several buyers of one).
 */
function buyerOf(eventId = unique("evt"), user = unique("ledger-buyer")) {
  const stub = limitStub(env.LIMIT_LEDGER, { id: eventId, sections: ONE_SECTION }, user);
  return {
    stub,
    user,
    eventId,
    reserve: (holdId: string, quantity: number, limit: number, expiresAt: number) => stub.reserve(user, holdId, quantity, limit, expiresAt),
    usage: () => stub.usage(user),
    setState: (holdId: string, state: LedgerState, expiresAt?: number) => stub.setState(holdId, state, expiresAt),
  };
}
const fresh = () => buyerOf();

const inTenMinutes = () => Date.now() + 600_000;

type Row = {
  hold_id: string;
  user_id: string;
  quantity: number;
  state: LedgerState;
  expires_at: number;
};
const rowsOf = (ledger: { stub: Stub }) =>
  runInDurableObject(ledger.stub, (_: LimitLedger, state) =>
    state.storage.sql.exec<Row>("SELECT hold_id, user_id, quantity, state, expires_at FROM reservations ORDER BY hold_id").toArray(),
  );
const sql = (ledger: { stub: Stub }, query: string, ...params: (string | number)[]) =>
  runInDurableObject(ledger.stub, (_: LimitLedger, state) => {
    state.storage.sql.exec(query, ...params);
  });

describe("LimitLedger: buckets", () => {
  it("puts every buyer of an event in one of its buckets, one per four Inventory DOs (1 to 64)", () => {
    const ga = (shards: number) => ({ id: "g", kind: "ga", capacity: 1_000_000, shards });
    expect(limitBuckets({ sections: ONE_SECTION })).toBe(1);
    expect(limitBuckets({ sections: [{ kind: "seated" }, ga(7)] })).toBe(2);
    expect(limitBuckets({ sections: [ga(64), ga(64), ga(64), ga(64)] })).toBe(64);
    expect(limitBuckets({ sections: [ga(64), ga(64), ga(64), ga(64), ga(64)] })).toBe(64);
    // A buyer's bucket is the same for every call; buyers spread over the buckets.
    const event = { id: "evt_b", sections: [ga(64), ga(64)] };
    const idOf = (user: string) => limitStub(env.LIMIT_LEDGER, event, user).id.toString();
    expect(idOf("alice")).toBe(idOf("alice"));
    expect(new Set(Array.from({ length: 200 }, (_, i) => idOf(`u${i}`))).size).toBeGreaterThan(20);
  });
});

describe("LimitLedger: the per-customer limit", () => {
  it("grants reservations up to the limit and refuses the one that would pass it, changing nothing", async () => {
    const ledger = fresh();
    expect(await ledger.reserve("h1", 2, 4, inTenMinutes())).toEqual({ ok: true, value: { used: 2, limit: 4 } });
    expect(await ledger.reserve("h2", 2, 4, inTenMinutes())).toEqual({ ok: true, value: { used: 4, limit: 4 } });
    const refused = await ledger.reserve("h3", 1, 4, inTenMinutes());
    expect(refused).toMatchObject({ ok: false, code: "limit_exceeded" });
    expect(refused.ok ? "" : refused.detail).toContain("4 places per customer; you have 4");
    expect(await ledger.usage()).toBe(4);
    expect((await rowsOf(ledger)).map((r) => r.hold_id)).toEqual(["h1", "h2"]);
  });

  it("counts holds of every section and shard of one event together, and other events apart", async () => {
    const ledger = fresh();
    // Holds of one event in different sections and shards (hold ids carry their location).
    for (const [holdId, qty] of [
      ["hAAA.ev.floor.0", 1],
      ["hBBB.ev.floor.1", 2],
      ["hCCC.ev.a.0", 1],
    ] as const)
      expect((await ledger.reserve(holdId, qty, 4, inTenMinutes())).ok).toBe(true);
    expect((await ledger.reserve("hDDD", 1, 4, inTenMinutes())).ok).toBe(false);
    // The same buyer in other events: their own ledgers.
    const [other, third] = [buyerOf(undefined, ledger.user), buyerOf(undefined, ledger.user)];
    expect((await other.reserve("hEEE", 4, 4, inTenMinutes())).ok).toBe(true);
    expect([await ledger.usage(), await other.usage(), await third.usage()]).toEqual([4, 4, 0]);
  });

  it("treats a second reserve of the same hold as the first (a retried call counts once)", async () => {
    const ledger = fresh();
    expect(await ledger.reserve("h1", 3, 4, inTenMinutes())).toEqual({ ok: true, value: { used: 3, limit: 4 } });
    expect(await ledger.reserve("h1", 3, 4, inTenMinutes())).toEqual({ ok: true, value: { used: 3, limit: 4 } });
    expect(await ledger.usage()).toBe(3);
    expect(await rowsOf(ledger)).toHaveLength(1);
  });

  it("keeps the buyers of one bucket apart", async () => {
    const a = fresh();
    const b = buyerOf(a.eventId);
    // One section: one bucket, so both buyers' reservations are in the same object.
    expect(b.stub.id.toString()).toBe(a.stub.id.toString());
    expect((await a.reserve("h1", 4, 4, inTenMinutes())).ok).toBe(true);
    expect((await b.reserve("h2", 4, 4, inTenMinutes())).ok).toBe(true);
    expect([await a.usage(), await b.usage()]).toEqual([4, 4]);
  });
});

describe("LimitLedger: a reservation follows its hold", () => {
  it("counts held, checking_out and sold, and frees released places for another hold", async () => {
    const ledger = fresh();
    await ledger.reserve("h1", 2, 4, inTenMinutes());
    await ledger.reserve("h2", 2, 4, inTenMinutes());
    await ledger.setState("h1", "checking_out");
    expect(await ledger.usage()).toBe(4);
    await ledger.setState("h1", "sold");
    expect(await ledger.usage()).toBe(4);
    await ledger.setState("h2", "released");
    expect(await ledger.usage()).toBe(2);
    expect((await ledger.reserve("h3", 2, 4, inTenMinutes())).ok).toBe(true);
    expect((await rowsOf(ledger)).map((r) => [r.hold_id, r.state])).toEqual([
      ["h1", "sold"],
      ["h2", "released"],
      ["h3", "held"],
    ]);
  });

  it("takes an Inventory DO's settlements of several holds in one call, each unless a newer one was applied, and creates lapsed ones", async () => {
    const ledger = fresh();
    const other = buyerOf(ledger.eventId);
    const until = inTenMinutes();
    await ledger.reserve("h1", 2, 4, until);
    await ledger.reserve("h2", 1, 4, until);
    const settle = (holdKey: string, userId: string, state: LedgerState, version: number, quantity = 1) => ({
      userId,
      holdKey,
      quantity,
      state,
      expiresAt: until,
      version,
    });
    await ledger.stub.settleMany([settle("h1", ledger.user, "sold", 5, 2), settle("h2", ledger.user, "released", 3)]);
    // An older settlement of h1 arrives late, with a newer one of h2 and one of a reservation that lapsed.
    await ledger.stub.settleMany([
      settle("h1", ledger.user, "released", 4, 2),
      settle("h2", ledger.user, "held", 6),
      settle("h3", other.user, "checking_out", 7),
    ]);
    expect((await rowsOf(ledger)).map((r) => [r.hold_id, r.user_id, r.state])).toEqual([
      ["h1", ledger.user, "sold"],
      ["h2", ledger.user, "held"],
      ["h3", other.user, "checking_out"],
    ]);
    expect(await ledger.usage()).toBe(3);
    expect(await other.usage()).toBe(1);
  });

  it("never lapses places in checkout or sold, though their hold's time has passed", async () => {
    const ledger = fresh();
    await ledger.reserve("h1", 1, 4, inTenMinutes());
    await ledger.reserve("h2", 1, 4, inTenMinutes());
    await ledger.setState("h1", "checking_out");
    await ledger.setState("h2", "sold");
    await sql(ledger, "UPDATE reservations SET expires_at = ?", Date.now() - 1);
    expect(await ledger.usage()).toBe(2);
    expect(await runDurableObjectAlarm(ledger.stub)).toBe(true);
    expect((await rowsOf(ledger)).map((r) => r.state)).toEqual(["checking_out", "sold"]);
  });

  it("gives a failed checkout back its hold's new expiry (plus the slack)", async () => {
    const ledger = fresh();
    await ledger.reserve("h1", 1, 4, inTenMinutes());
    await ledger.setState("h1", "checking_out");
    const reopenedUntil = Date.now() + 120_000;
    await ledger.setState("h1", "held", reopenedUntil);
    const [row] = await rowsOf(ledger);
    expect(row).toMatchObject({ state: "held", expires_at: reopenedUntil + RESERVATION_SLACK_MS });
    expect(await ledger.usage()).toBe(1);
  });

  it("lets a reservation whose hold call never finished lapse by itself after the hold's time and the slack", async () => {
    const ledger = fresh();
    const holdExpiry = inTenMinutes();
    expect((await ledger.reserve("orphan", 4, 4, holdExpiry)).ok).toBe(true);
    const [row] = await rowsOf(ledger);
    expect(row).toMatchObject({ state: "held", expires_at: holdExpiry + RESERVATION_SLACK_MS });
    expect((await ledger.reserve("h2", 1, 4, inTenMinutes())).ok).toBe(false);
    // Time passes: the hold's lifetime and the slack are over, and nobody confirmed or released it.
    await sql(ledger, "UPDATE reservations SET expires_at = ? WHERE hold_id = 'orphan'", Date.now() - 1);
    expect(await ledger.usage()).toBe(0);
    expect((await ledger.reserve("h2", 4, 4, inTenMinutes())).ok).toBe(true);
  });

  it("cleans up lapsed and released reservations in its alarm, and stops the alarm when nothing is left", async () => {
    const ledger = fresh();
    await ledger.reserve("lapsed", 1, 9, inTenMinutes());
    await ledger.reserve("released", 1, 9, inTenMinutes());
    await ledger.reserve("live", 1, 9, inTenMinutes());
    await ledger.setState("released", "released");
    await sql(ledger, "UPDATE reservations SET expires_at = ? WHERE hold_id IN ('lapsed', 'released')", Date.now() - 1);
    // reserve() scheduled the cleanup alarm.
    await expect.poll(() => runInDurableObject(ledger.stub, (_: LimitLedger, state) => state.storage.getAlarm())).not.toBeNull();
    expect(await runDurableObjectAlarm(ledger.stub)).toBe(true);
    expect((await rowsOf(ledger)).map((r) => r.hold_id)).toEqual(["live"]);
    // Something is still pending: another alarm is set, about an hour out.
    const next = await runInDurableObject(ledger.stub, (_: LimitLedger, state) => state.storage.getAlarm());
    expect(next).toBeGreaterThan(Date.now() + 3_500_000);
    await ledger.setState("live", "sold");
    expect(await runDurableObjectAlarm(ledger.stub)).toBe(true);
    expect(await runInDurableObject(ledger.stub, (_: LimitLedger, state) => state.storage.getAlarm())).toBeNull();
    // A later reserve schedules the cleanup again.
    await ledger.reserve("again", 1, 9, inTenMinutes());
    // reserve() sets the alarm without waiting for it (off the hot path): give it a moment.
    await expect.poll(() => runInDurableObject(ledger.stub, (_: LimitLedger, state) => state.storage.getAlarm())).not.toBeNull();
  });
});

describe("LimitLedger: concurrency", () => {
  it("grants exactly the limit to many concurrent reserve calls", async () => {
    const ledger = fresh();
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => ledger.reserve(`h${i}`, 1, 4, inTenMinutes())));
    expect(results.filter((r) => r.ok)).toHaveLength(4);
    for (const r of results.filter((r) => !r.ok)) expect(r).toMatchObject({ code: "limit_exceeded" });
    expect(await ledger.usage()).toBe(4);
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
    const results = await Promise.all(sizes.map((q, i) => ledger.reserve(`m${i}`, q, 10, inTenMinutes())));
    const granted = sizes.filter((_, i) => results[i]?.ok).reduce((a, b) => a + b, 0);
    expect(await ledger.usage()).toBe(granted);
    expect(granted).toBeLessThanOrEqual(10);
    // The smallest request (1) was refused only once nothing at all was left.
    if (results.some((r, i) => !r.ok && sizes[i] === 1)) expect(granted).toBe(10);
  });
});

describe("LimitLedger behind the routes", () => {
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
    const ledger = buyerOf(ev.id, user);
    expect(ledger.stub.id.toString()).toBe(limitStub(env.LIMIT_LEDGER, ev, user).id.toString());
    const stateOf = async (holdId: string) => (await rowsOf(ledger)).find((r) => r.hold_id === holdId);
    expect(await stateOf(ga)).toMatchObject({ user_id: user, quantity: 2, state: "held" });
    expect(await stateOf(seated)).toMatchObject({ user_id: user, quantity: 2, state: "held" });
    expect(await ledger.usage()).toBe(4);
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
    // The Inventory DO's next alarm (within a second) settles the sale into the ledger with its other
    // notes; until then the reservation counts as held, to the hold's expiry.
    await expect.poll(async () => (await stateOf(seated))?.state, { timeout: 10_000 }).toBe("sold");
    expect((await call(`/v1/holds/${ga}`, { method: "DELETE", token })).status).toBe(204);
    expect((await stateOf(ga))?.state).toBe("released");
    expect(await ledger.usage()).toBe(2);
    expect((await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: { sectionId: "floor", quantity: 3 } })).status).toBe(
      201,
    );
    expect(await ledger.usage()).toBe(5);
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
    const [row] = await rowsOf(buyerOf(ev.id, user));
    expect(row).toMatchObject({ state: "held", quantity: 2 });
    expect(row?.expires_at).toBeGreaterThan(Date.now());
  });
});

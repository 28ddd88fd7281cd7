import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Inventory } from "../../durable-objects/inventory";
import type { LimitLedger } from "../../durable-objects/limit-ledger";
import type { EventRouting } from "../../lib/event-schema";
import { inventoryStub, limitStub } from "../../lib/holds";
import type { InventoryConfig } from "../../lib/inventory-types";
import { NEEDS_SETUP } from "../../lib/inventory-types";

/**
 * The hold hot path of the Inventory DO (issue 20): `place` holds with the configuration the object keeps
 * (by event version) and asks for it otherwise; a taken hold id is refused by the primary key without a
 * lookup; expiry still happens on the path although the expiry query is skipped while nothing can be due.
 */

let n = 0;
/** A fresh GA section of `capacity` places (its own object) with `holdSeconds`. */
function section(capacity: number, holdSeconds = 600) {
  const eventId = `evt_hotpath${n++}`;
  const cfg: InventoryConfig = {
    eventId,
    sectionId: "ga",
    kind: "ga",
    shard: 0,
    shards: 1,
    capacity,
    price: 100,
    currency: "EUR",
    holdSeconds,
  };
  const routing = (name: string): EventRouting =>
    ({
      id: eventId,
      sections: [{ id: "ga", name, kind: "ga", price: 100, capacity }],
      waitingRoom: { enabled: false },
      saleStartsAt: new Date(0).toISOString(),
    }) as unknown as EventRouting;
  const stub = inventoryStub(env.INVENTORY, { eventId, sectionId: "ga", shard: 0 });
  const holdId = (i: number) => `hld_${String(i).padStart(20, "a")}.${eventId}.ga.0`;
  return { cfg, routing, stub, holdId };
}

/** Whether a `place` answer is a hold made. */
const held = (r: Awaited<ReturnType<Inventory["place"]>>): boolean => r !== NEEDS_SETUP && r.ok;

/** The routing the object keeps (meta 'event'), with its version. */
const kept = (state: DurableObjectState) => {
  const meta = new Map(
    state.storage.sql
      .exec<{ k: string; v: string }>("SELECT k, v FROM meta WHERE k IN ('event', 'event_version')")
      .toArray()
      .map((r) => [r.k, r.v]),
  );
  return {
    name: (JSON.parse(meta.get("event") ?? "{}") as { sections?: { name: string }[] }).sections?.[0]?.name,
    version: Number(meta.get("event_version")),
  };
};

describe("Inventory.place: holds without configuration per call", () => {
  it("asks a new object for its configuration and writes nothing until it has it", async () => {
    const s = section(5);
    const r = await s.stub.place({ holdId: s.holdId(1), userId: "u1", quantity: 1, eventVersion: 1 });
    expect(r).toBe(NEEDS_SETUP);
    const tables = await runInDurableObject(s.stub, (_i: Inventory, state) =>
      state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'").toArray(),
    );
    expect(tables).toEqual([]);
  });

  it("holds by version once configured, asks again for a newer version, and never rolls the routing back", async () => {
    const s = section(6);
    const first = await s.stub.hold(s.cfg, s.routing("v1"), { holdId: s.holdId(1), userId: "u1", quantity: 1, eventVersion: 1 });
    expect(first.ok).toBe(true);
    const same = await s.stub.place({ holdId: s.holdId(2), userId: "u2", quantity: 2, eventVersion: 1 });
    expect(same).toMatchObject({ ok: true, value: { quantity: 2, status: "active", total: 200 } });
    // The event changed (version 2): the object asks, nothing is held.
    expect(await s.stub.place({ holdId: s.holdId(3), userId: "u3", quantity: 1, eventVersion: 2 })).toBe(NEEDS_SETUP);
    expect(await s.stub.snapshot()).toMatchObject({ held: 3, available: 3 });
    expect((await s.stub.hold(s.cfg, s.routing("v2"), { holdId: s.holdId(3), userId: "u3", quantity: 1, eventVersion: 2 })).ok).toBe(true);
    // An edge still on version 1 holds with what the object keeps, and does not bring version 1 back.
    expect(held(await s.stub.place({ holdId: s.holdId(4), userId: "u4", quantity: 1, eventVersion: 1 }))).toBe(true);
    expect((await s.stub.hold(s.cfg, s.routing("v1"), { holdId: s.holdId(5), userId: "u5", quantity: 1, eventVersion: 1 })).ok).toBe(true);
    expect(await runInDurableObject(s.stub, (_i: Inventory, state) => kept(state))).toEqual({ name: "v2", version: 2 });
    expect(await s.stub.snapshot()).toMatchObject({ held: 6, available: 0, sold: 0, capacity: 6 });
    // Sold out through place, too.
    expect(await s.stub.place({ holdId: s.holdId(6), userId: "u6", quantity: 1, eventVersion: 2 })).toMatchObject({
      ok: false,
      code: "sold_out",
    });
  });

  it("refuses a hold id in use without changing any count", async () => {
    const s = section(5);
    expect((await s.stub.hold(s.cfg, s.routing("v1"), { holdId: s.holdId(1), userId: "u1", quantity: 2, eventVersion: 1 })).ok).toBe(true);
    const again = await s.stub.place({ holdId: s.holdId(1), userId: "u2", quantity: 1, eventVersion: 1 });
    expect(again).toMatchObject({ ok: false, code: "validation_failed" });
    expect(await s.stub.snapshot()).toMatchObject({ held: 2, available: 3, sold: 0 });
    const rows = await runInDurableObject(s.stub, (_i: Inventory, state) =>
      state.storage.sql.exec<{ user_id: string; quantity: number }>("SELECT user_id, quantity FROM holds").toArray(),
    );
    expect(rows).toEqual([{ user_id: "u1", quantity: 2 }]);
  });

  it("expires due holds on the hot path (no alarm) although it skips the expiry query until one can be due", async () => {
    const s = section(1, 1);
    expect((await s.stub.hold(s.cfg, s.routing("v1"), { holdId: s.holdId(1), userId: "u1", quantity: 1, eventVersion: 1 })).ok).toBe(true);
    await runInDurableObject(s.stub, (_i: Inventory, state) => state.storage.deleteAlarm());
    // Sold out until the first hold's second has passed; then a hold on the path expires it and succeeds.
    let i = 2;
    await expect
      .poll(async () => held(await s.stub.place({ holdId: s.holdId(i++), userId: "u2", quantity: 1, eventVersion: 1 })), {
        timeout: 10_000,
        interval: 200,
      })
      .toBe(true);
    const statuses = await runInDurableObject(s.stub, (_i: Inventory, state) =>
      state.storage.sql.exec<{ user_id: string; status: string }>("SELECT user_id, status FROM holds ORDER BY created_at").toArray(),
    );
    expect(statuses).toEqual([
      { user_id: "u1", status: "expired" },
      { user_id: "u2", status: "active" },
    ]);
    expect(await s.stub.snapshot()).toMatchObject({ held: 1, available: 0 });
  });
});

describe("Inventory.place with the per-customer limit (the object reserves in the buyers' LimitLedger)", () => {
  /** The buyer's reservations in the event's (one) LimitLedger bucket. */
  const reservationsOf = (s: ReturnType<typeof section>, user: string) =>
    runInDurableObject(limitStub(env.LIMIT_LEDGER, s.routing("x"), user), (_l: LimitLedger, state) =>
      state.storage.sql
        .exec<{ hold_id: string; state: string }>("SELECT hold_id, state FROM reservations WHERE user_id = ? ORDER BY hold_id", user)
        .toArray(),
    );
  /** Configures the object at event version 1 with one hold (no limit) of one place. */
  const setUp = (s: ReturnType<typeof section>) =>
    s.stub.hold(s.cfg, s.routing("x"), { holdId: s.holdId(999), userId: "setup", quantity: 1, eventVersion: 1 });

  it("reserves each concurrent buyer's places, holds within the limit and refuses past it, all exactly", async () => {
    const s = section(100);
    await setUp(s);
    // Three buyers, limit 4, each asking 6 times for 1 place at once: exactly 4 each.
    const asks = ["ana", "ben", "cem"].flatMap((user, u) =>
      Array.from({ length: 6 }, (_, i) => ({ user, id: s.holdId(100 + u * 10 + i) })),
    );
    const answers = await Promise.all(
      asks.map((a) => s.stub.place({ holdId: a.id, userId: a.user, quantity: 1, limit: 4, eventVersion: 1 })),
    );
    for (const user of ["ana", "ben", "cem"]) {
      const mine = answers.filter((_, i) => asks[i]?.user === user);
      expect(mine.filter(held)).toHaveLength(4);
      for (const r of mine.filter((r) => !held(r))) expect(r).toMatchObject({ ok: false, code: "limit_exceeded" });
      expect((await reservationsOf(s, user)).map((r) => r.state)).toEqual(["held", "held", "held", "held"]);
    }
  });

  it("reserves nothing for a hold the section cannot give, and releases a reservation whose hold lost the race", async () => {
    const s = section(3);
    await setUp(s);
    // 2 left. Sold out for a request of 3: refused before any reservation.
    expect(await s.stub.place({ holdId: s.holdId(1), userId: "dan", quantity: 3, limit: 9, eventVersion: 1 })).toMatchObject({
      ok: false,
      code: "seats_unavailable",
    });
    expect(await reservationsOf(s, "dan")).toEqual([]);
    // Two buyers ask for both places at once: both may hold as things stand, both are reserved; one wins.
    const [a, b] = await Promise.all([
      s.stub.place({ holdId: s.holdId(2), userId: "eva", quantity: 2, limit: 9, eventVersion: 1 }),
      s.stub.place({ holdId: s.holdId(3), userId: "fay", quantity: 2, limit: 9, eventVersion: 1 }),
    ]);
    expect([a, b].filter(held)).toHaveLength(1);
    const loser = held(a) ? "fay" : "eva";
    await expect.poll(async () => (await reservationsOf(s, loser)).map((r) => r.state)).toEqual(["released"]);
    expect((await reservationsOf(s, loser === "eva" ? "fay" : "eva")).map((r) => r.state)).toEqual(["held"]);
  });
});

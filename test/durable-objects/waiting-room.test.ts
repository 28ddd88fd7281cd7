import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_TICK_GAP_MS, WaitingRoom } from "../../durable-objects/waiting-room";
import type { EventRouting as RoomEvent } from "../../lib/event-schema";
import type { InventoryReport } from "../../lib/inventory-types";
import {
  type ArrivalReport,
  bucketOf,
  type FrozenPreQueue,
  PRE_BUCKET,
  placeTicket,
  queueKey,
  type RoomState,
  SETTLE_MS,
} from "../../lib/waiting-room-order";

/** The sale opens at T0 (room clock; the tests move it, nothing sleeps). */
const T0 = Date.UTC(2030, 0, 1, 10, 0, 0);
const B0 = bucketOf(T0);

let n = 0;
/** A fresh room for an event opening at T0 with a ceiling of `admitPerMinute`. */
function freshRoom(admitPerMinute = 600) {
  const id = `evt_room${String(n++).padStart(4, "0")}${crypto.randomUUID().replace(/-/g, "").slice(0, 12)}`;
  const event: RoomEvent = {
    id,
    saleStartsAt: new Date(T0).toISOString(),
    waitingRoom: { enabled: true, admitPerMinute },
    sections: [
      { id: "floor", name: "Floor", kind: "ga", price: 5000, capacity: 1000, shards: 2 },
      { id: "a", name: "A", kind: "seated", price: 8000, capacity: 10, rows: [{ id: "1", seats: 10 }] },
    ],
  };
  return { event, stub: env.WAITING_ROOM.get(env.WAITING_ROOM.idFromName(id)) };
}
type Stub = ReturnType<typeof freshRoom>["stub"];

/** Sets the room's clock. */
const setClock = (stub: Stub, ms: number) =>
  runInDurableObject(stub, (room: WaitingRoom) => {
    room.clock = () => ms;
  });

/** Runs the room's alarm at room time `ms`. */
async function tickAt(stub: Stub, ms: number): Promise<void> {
  await setClock(stub, ms);
  expect(await runDurableObjectAlarm(stub)).toBe(true);
}

/** A second instance on the room's storage, loaded (its constructor's load runs once the creating call ends). */
async function reload(stub: Stub): Promise<WaitingRoom> {
  const again = await runInDurableObject(stub, (_room: WaitingRoom, ctx) => new WaitingRoom(ctx, env));
  await runInDurableObject(stub, () => undefined);
  return again;
}

/** A simulated buyer: arrival time, isolate, and the (k, s) the isolate gave the ticket. */
interface SimTicket {
  t: number;
  i: string;
  k: number;
  s: number;
}

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Buyers arriving at `times` over `isolates`, numbered per isolate and bucket as the edge does. */
function arrive(times: number[], isolates: string[], random: () => number, openAt = T0): SimTicket[] {
  const seq = new Map<string, number>();
  return [...times]
    .sort((a, b) => a - b)
    .map((t) => {
      const i = isolates[Math.floor(random() * isolates.length)] as string;
      const k = t < openAt ? PRE_BUCKET : bucketOf(t);
      const key = `${i}/${k}`;
      const s = seq.get(key) ?? 0;
      seq.set(key, s + 1);
      return { t, i, k, s };
    });
}

/** The cumulative counts each isolate would report for `tickets`. */
function reports(tickets: SimTicket[]): ArrivalReport[] {
  const by = new Map<string, Map<number, number>>();
  for (const t of tickets) {
    const m = by.get(t.i) ?? new Map<number, number>();
    m.set(t.k, Math.max(m.get(t.k) ?? 0, t.s + 1));
    by.set(t.i, m);
  }
  return [...by].map(([isolate, m]) => ({ isolate, counts: [...m] }));
}

async function syncAll(stub: Stub, event: RoomEvent, tickets: SimTicket[]): Promise<RoomState> {
  let state: RoomState | null = null;
  for (const r of reports(tickets)) state = await stub.sync(event, r);
  return state ?? stub.sync(event, null);
}

const admittedSet = (tickets: SimTicket[], state: RoomState, now: number) =>
  new Set(tickets.filter((t) => placeTicket(t, state, now).admitted));

const ISOLATES = ["isoaaaaaaaaa", "isobbbbbbbbb", "isoccccccccc"];

describe("WaitingRoom DO: fairness", () => {
  it("after the opening, admits in arrival order (to the second; exactly within an isolate), never faster than the rate", async () => {
    const { event, stub } = freshRoom(600);
    const random = rng(7);
    const tickets = arrive(
      Array.from({ length: 120 }, () => T0 + Math.floor(random() * 5_000)),
      ISOLATES,
      random,
    );
    await setClock(stub, T0 + 5_100);
    await syncAll(stub, event, tickets);
    let now = T0 + 5_100;
    await tickAt(stub, now);
    let before = 0;
    for (let round = 0; round < 40 && before < tickets.length; round++) {
      now += 1_000;
      await tickAt(stub, now);
      const state = await stub.sync(event, null);
      const admitted = admittedSet(tickets, state, now);
      expect(admitted.size).toBe(state.admitted);
      // Never more than the rate allows in this one-second window (+1 for the carried fraction).
      expect(admitted.size - before).toBeLessThanOrEqual(Math.floor(state.rate / 60) + 1);
      for (const a of admitted)
        for (const b of tickets) {
          if (admitted.has(b)) continue;
          expect(a.k).toBeLessThanOrEqual(b.k);
          if (a.i === b.i) expect(a.t).toBeLessThanOrEqual(b.t);
        }
      before = admitted.size;
    }
    expect(before).toBe(tickets.length);
  });

  it("before the opening, queues in a shuffle drawn at the opening that differs from arrival and stays fixed", async () => {
    const { event, stub } = freshRoom(600);
    const random = rng(11);
    const pre = arrive(
      Array.from({ length: 60 }, () => T0 - 600_000 + Math.floor(random() * 590_000)),
      ISOLATES,
      random,
    );
    await setClock(stub, T0 - 5_000);
    let state = await syncAll(stub, event, pre);
    expect(state).toMatchObject({ opened: false, pre: null, preWaiting: 60 });
    await tickAt(stub, T0 - 4_000);
    await tickAt(stub, T0 + SETTLE_MS - 1);
    expect((await stub.sync(event, null)).opened).toBe(false);
    await tickAt(stub, T0 + SETTLE_MS);
    state = await stub.sync(event, null);
    expect(state.opened).toBe(true);
    expect(state.pre?.total).toBe(60);
    expect(state.pre?.seed).toMatch(/^[0-9a-f]{32}$/);
    const drawn = state.pre;

    // Every pre-sale ticket has its own slot; slot order is the admission order, and it is not arrival order.
    const slotOf = (t: SimTicket) => {
      const key = queueKey(t, drawn as FrozenPreQueue, state.openBucket);
      if (key.kind !== "pre") throw new Error("not a pre-queue slot");
      return key.slot;
    };
    expect(new Set(pre.map(slotOf)).size).toBe(60);
    const order = [...pre].sort((a, b) => slotOf(a) - slotOf(b));
    expect(order).not.toEqual(pre);
    // Not even one isolate's buyers keep their arrival order (laying isolates end to end is not a shuffle).
    for (const iso of ISOLATES) {
      const slots = pre.filter((t) => t.i === iso).map(slotOf);
      expect(slots).not.toEqual([...slots].sort((a, b) => a - b));
    }
    const firstHalf = new Set(pre.slice(0, 30));
    const admittedFirstHalf = order.slice(0, 30).filter((t) => firstHalf.has(t)).length;
    expect(admittedFirstHalf).toBeGreaterThan(5);
    expect(admittedFirstHalf).toBeLessThan(25);

    // Tick by tick, from the published state only (as the edge sees it): exactly the lowest slots are in.
    let now = T0 + SETTLE_MS;
    let admitted = 0;
    for (let round = 0; round < 30 && admitted < pre.length; round++) {
      now += 1_000;
      await tickAt(stub, now);
      state = await stub.sync(event, null);
      expect(state.pre).toMatchObject({ total: drawn?.total, seed: drawn?.seed, ids: drawn?.ids, offsets: drawn?.offsets });
      const inNow = admittedSet(pre, state, now);
      expect(inNow).toEqual(new Set(order.slice(0, inNow.size)));
      expect(inNow.size - admitted).toBeLessThanOrEqual(Math.floor(state.rate / 60) + 1);
      admitted = inNow.size;
    }
    expect(admitted).toBe(60);

    // Fixed once made: the seed and frozen counts are durable, and late counts do not redraw them.
    const stored = await runInDurableObject(stub, (_room: WaitingRoom, ctx) =>
      JSON.parse(ctx.storage.sql.exec<{ state: string }>("SELECT state FROM room WHERE id = 0").one().state),
    );
    expect(stored.opening.seed).toBe(drawn?.seed);
    const countA = pre.filter((t) => t.i === "isoaaaaaaaaa").length;
    const late: ArrivalReport = { isolate: "isoaaaaaaaaa", counts: [[PRE_BUCKET, countA + 2]] };
    state = await stub.sync(event, late);
    expect(state.pre).toEqual({ ...drawn, admitted: 60 });
    // A new instance on the same storage (what an eviction leads to) publishes the same draw.
    const again = await reload(stub);
    again.clock = () => now;
    expect((await runInDurableObject(stub, () => again.sync(event, null))).pre).toEqual(state.pre);
  });

  it("queues pre-sale tickets counted after the freeze after the shuffled ones and before later arrivals", async () => {
    const { event, stub } = freshRoom(600);
    const iso = "isoaaaaaaaaa";
    await setClock(stub, T0 - 1_000);
    await stub.sync(event, { isolate: iso, counts: [[PRE_BUCKET, 3]] });
    await tickAt(stub, T0 + SETTLE_MS);
    // Three more pre-sale tickets are counted only now, and one buyer arrived after the opening.
    await stub.sync(event, {
      isolate: iso,
      counts: [
        [PRE_BUCKET, 6],
        [B0, 1],
      ],
    });
    const late = [3, 4, 5].map((s) => ({ k: PRE_BUCKET, s, i: iso }));
    const onTime = [0, 1, 2].map((s) => ({ k: PRE_BUCKET, s, i: iso }));
    const after = { k: B0, s: 0, i: iso };
    const seen: string[] = [];
    for (let now = T0 + SETTLE_MS + 200; seen.length < 7; now += 200) {
      await tickAt(stub, now);
      const state = await stub.sync(event, null);
      for (const [name, t] of [
        ...onTime.map((t) => [`on${t.s}`, t] as const),
        ...late.map((t) => [`late${t.s}`, t] as const),
        ["after", after] as const,
      ])
        if (!seen.includes(name) && placeTicket(t, state, now).admitted) seen.push(name);
    }
    expect(seen.slice(0, 3).sort()).toEqual(["on0", "on1", "on2"]);
    expect(seen.slice(3, 6)).toEqual(["late3", "late4", "late5"]);
    expect(seen[6]).toBe("after");
  });
});

describe("WaitingRoom DO: admission rate", () => {
  it("never admits more than rate × elapsed, whatever the tick spacing, and a doubled alarm admits nothing", async () => {
    const { event, stub } = freshRoom(600);
    await setClock(stub, T0);
    await stub.sync(event, { isolate: "isoaaaaaaaaa", counts: [[B0, 5_000]] });
    let now = T0 + SETTLE_MS + 1_000;
    await tickAt(stub, now);
    let state = await stub.sync(event, null);
    let budget = 1; // the carried fraction
    for (const dt of [1_000, 500, 1_500, 250, 1_000, 0, 3_000, 1_000, 0, 0, 700, 2_000, 1_000]) {
      now += dt;
      const before = state.admitted;
      await tickAt(stub, now);
      state = await stub.sync(event, null);
      const admitted = state.admitted - before;
      const allowed = (state.rate / 60_000) * Math.min(dt, MAX_TICK_GAP_MS);
      budget += allowed;
      expect(admitted).toBeLessThanOrEqual(Math.floor(allowed) + 1);
      if (dt === 0) expect(admitted).toBe(0);
      expect(state.admitted).toBeLessThanOrEqual(budget);
    }
    expect(state.admitted).toBeGreaterThan(50);
  });

  it("falls when the inventory reports overload, never below the floor, and recovers when it is healthy again", async () => {
    const { event, stub } = freshRoom(1_200);
    await setClock(stub, T0);
    await stub.sync(event, { isolate: "isoaaaaaaaaa", counts: [[B0, 100_000]] });
    let now = T0 + SETTLE_MS;
    await tickAt(stub, now);
    const rates: number[] = [];
    const admittedPerTick: number[] = [];
    const tick = async (report?: Partial<InventoryReport["health"]>) => {
      now += 1_000;
      if (report)
        await stub.reportInventory(event, {
          sectionId: "floor",
          shard: 0,
          at: now,
          capacity: 500,
          available: 400,
          held: 100,
          sold: 0,
          health: { holdLatencyP95Ms: 5, holdsPerSecond: 20, overloads: 0, activeHolds: 10, ...report },
        });
      const before = (await stub.sync(event, null)).admitted;
      await tickAt(stub, now);
      const state = await stub.sync(event, null);
      rates.push(state.rate);
      admittedPerTick.push(state.admitted - before);
      return state;
    };
    // Healthy: from half the ceiling up to the ceiling, one step a second.
    for (let i = 0; i < 12; i++) await tick({});
    expect(rates.slice(0, 3)).toEqual([720, 780, 840]);
    expect(rates.at(-1)).toBe(1_200);
    // Overload: halves at most once per cooldown (2 s), down to the floor (5 %).
    rates.length = 0;
    admittedPerTick.length = 0;
    for (let i = 0; i < 12; i++) await tick({ overloads: 3, holdLatencyP95Ms: 400 });
    expect(rates.slice(0, 4)).toEqual([600, 600, 300, 300]);
    expect(rates.at(-1)).toBe(60);
    // …and admissions follow the rate (≤ rate/s + 1 for the carried fraction).
    for (const [j, a] of admittedPerTick.entries()) expect(a).toBeLessThanOrEqual(Math.floor((rates[j] as number) / 60) + 1);
    expect(admittedPerTick.at(-1)).toBeLessThanOrEqual(2);
    // Warm but not overloaded: holds steady.
    rates.length = 0;
    await tick({ holdLatencyP95Ms: 70 });
    expect(rates).toEqual([60]);
    // Healthy again: additive recovery.
    rates.length = 0;
    for (let i = 0; i < 25; i++) await tick({});
    expect(rates.slice(0, 3)).toEqual([120, 180, 240]);
    expect(rates.at(-1)).toBe(1_200);
  });

  it("stops admitting while nothing is available, and for good when sold out", async () => {
    const { event, stub } = freshRoom(600);
    await setClock(stub, T0);
    await stub.sync(event, { isolate: "isoaaaaaaaaa", counts: [[B0, 1_000]] });
    let now = T0 + SETTLE_MS;
    await tickAt(stub, now);
    now += 1_000;
    await tickAt(stub, now);
    const report = (sectionId: string, shard: number, available: number, held: number, sold: number): InventoryReport => ({
      sectionId,
      shard,
      at: now,
      capacity: available + held + sold,
      available,
      held,
      sold,
      health: { holdLatencyP95Ms: 1, holdsPerSecond: 1, overloads: 0, activeHolds: held },
    });
    await stub.reportInventory(event, report("floor", 0, 0, 0, 500));
    await stub.reportInventory(event, report("floor", 1, 0, 3, 497));
    await stub.reportInventory(event, report("a", 0, 0, 0, 10));
    const paused = (await stub.sync(event, null)).admitted;
    now += 1_000;
    await tickAt(stub, now);
    let state = await stub.sync(event, null);
    expect(state).toMatchObject({ paused: true, soldOut: false, admitted: paused });
    // A hold expires: seats are back, admission resumes.
    await stub.reportInventory(event, report("floor", 1, 3, 0, 497));
    now += 1_000;
    await tickAt(stub, now);
    state = await stub.sync(event, null);
    expect(state.paused).toBe(false);
    expect(state.admitted).toBeGreaterThan(paused);
    // Sold: every section sold, nothing held.
    await stub.reportInventory(event, report("floor", 1, 0, 0, 500));
    const soldAt = (await stub.sync(event, null)).admitted;
    for (let i = 0; i < 3; i++) {
      now += 1_000;
      await tickAt(stub, now);
    }
    state = await stub.sync(event, null);
    expect(state).toMatchObject({ soldOut: true, admitted: soldAt });
  });

  it("pays back tickets counted after the watermark passed them out of the next budgets", async () => {
    const { event, stub } = freshRoom(600);
    const iso = "isoaaaaaaaaa";
    await setClock(stub, T0);
    await stub.sync(event, { isolate: iso, counts: [[B0, 2]] });
    let now = T0 + SETTLE_MS + 1_000;
    await tickAt(stub, now);
    now += 1_000;
    await tickAt(stub, now);
    let state = await stub.sync(event, null);
    expect(state.admitted).toBe(2);
    expect(state.frontier.b).toBeGreaterThan(B0);
    // This isolate reports 8 more tickets of B0 late: they are already below the watermark.
    state = await stub.sync(event, { isolate: "isobbbbbbbbb", counts: [[B0, 8]] });
    expect(placeTicket({ k: B0, s: 7, i: "isobbbbbbbbb" }, state, now).admitted).toBe(true);
    await stub.sync(event, { isolate: iso, counts: [[B0 + 2, 50]] });
    const admittedBy = async (at: number) => {
      const before = (await stub.sync(event, null)).admitted;
      await tickAt(stub, at);
      return (await stub.sync(event, null)).admitted - before;
    };
    // 390/min for a second is 6.5: 6 of the 8 owed are paid, nobody new goes in…
    now += 1_000;
    expect(await admittedBy(now)).toBe(0);
    // …then 420/min + the carried half is 7: 2 owed, 5 admitted.
    now += 1_000;
    expect(await admittedBy(now)).toBe(5);
  });
});

describe("WaitingRoom DO: inventory reports and availability", () => {
  it("aggregates the latest report per section and shard, ignores older ones, and keeps them durably", async () => {
    const { event, stub } = freshRoom();
    const r = (sectionId: string, shard: number, at: number, available: number, held: number, sold: number): InventoryReport => ({
      sectionId,
      shard,
      at,
      capacity: available + held + sold,
      available,
      held,
      sold,
      health: { holdLatencyP95Ms: 1, holdsPerSecond: 1, overloads: 0, activeHolds: held },
    });
    await stub.reportInventory(event, r("floor", 0, 10, 490, 5, 5));
    await stub.reportInventory(event, r("floor", 0, 5, 0, 0, 500));
    await stub.reportInventory(event, r("a", 0, 10, 7, 2, 1));
    const snap = await stub.availability(event);
    expect(snap.eventId).toBe(event.id);
    expect(snap.sections).toEqual([
      { id: "floor", capacity: 1000, available: 990, held: 5, sold: 5 },
      { id: "a", capacity: 10, available: 7, held: 2, sold: 1 },
    ]);
    const again = await reload(stub);
    expect(again.availability(event).sections).toEqual(snap.sections);
  });
});

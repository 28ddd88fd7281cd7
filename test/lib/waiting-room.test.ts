import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { InventoryReport } from "../../lib/inventory-types";
import { b64url, fromB64url, signPayload } from "../../lib/signing";
import {
  ArrivalCounter,
  checkQueuePass,
  checkQueueTicket,
  issuePass,
  PASS_TTL_MS,
  type QueueTicket,
  signTicket,
  TICKET_TTL_MS,
  verifyQueuePass,
} from "../../lib/waiting-room";
import {
  advanceFrontier,
  type BucketCounts,
  compareKeys,
  countBelow,
  type Frontier,
  PRE_BUCKET,
  placeTicket,
  queueKey,
  type RoomState,
  SETTLE_MS,
  shuffleSlot,
} from "../../lib/waiting-room-order";
import { healthSignal, nextRate, ratePolicy } from "../../lib/waiting-room-rate";

const SEED = "0123456789abcdef0123456789abcdef";
const SEED2 = "fedcba9876543210fedcba9876543210";

describe("shuffleSlot (the pre-queue's permutation)", () => {
  it("is a bijection on [0, n) for every size", () => {
    for (const n of [1, 2, 3, 4, 5, 17, 64, 65, 1_000, 4_097]) {
      const seen = new Set<number>();
      for (let i = 0; i < n; i++) {
        const slot = shuffleSlot(i, n, SEED);
        expect(slot).toBeGreaterThanOrEqual(0);
        expect(slot).toBeLessThan(n);
        seen.add(slot);
      }
      expect(seen.size).toBe(n);
    }
  });

  it("differs from arrival order, is the same for the same seed, and changes with the seed", () => {
    const n = 200;
    const a = Array.from({ length: n }, (_, i) => shuffleSlot(i, n, SEED));
    expect(Array.from({ length: n }, (_, i) => shuffleSlot(i, n, SEED))).toEqual(a);
    const b = Array.from({ length: n }, (_, i) => shuffleSlot(i, n, SEED2));
    expect(b).not.toEqual(a);
    // Far from the identity: few fixed points, and early arrivals are spread over the whole queue.
    expect(a.filter((slot, i) => slot === i).length).toBeLessThan(10);
    const firstTenth = a.slice(0, 20);
    expect(Math.max(...firstTenth)).toBeGreaterThan(n / 2);
  });

  it("refuses an index outside the domain and a malformed seed", () => {
    expect(() => shuffleSlot(5, 5, SEED)).toThrow(RangeError);
    expect(() => shuffleSlot(0, 0, SEED)).toThrow(RangeError);
    expect(() => shuffleSlot(0, 5, "not-hex")).toThrow();
  });
});

/** Every key of a set of buckets, in queue order. */
function allKeys(buckets: Map<number, BucketCounts>): Frontier[] {
  const keys: Frontier[] = [];
  for (const [b, m] of buckets) for (const [i, c] of m) for (let s = 0; s < c; s++) keys.push({ b, s, i });
  return keys.sort(compareKeys);
}

describe("advanceFrontier (moving the watermark)", () => {
  const buckets = new Map<number, BucketCounts>([
    [
      100,
      new Map([
        ["aaaaaaaa", 5],
        ["bbbbbbbb", 1],
        ["cccccccc", 3],
      ]),
    ],
    [101, new Map([["bbbbbbbb", 4]])],
    [
      103,
      new Map([
        ["aaaaaaaa", 2],
        ["cccccccc", 7],
      ]),
    ],
  ]);
  const keys = allKeys(buckets);

  it("admits exactly the next `budget` tickets in queue order, whatever the budgets", () => {
    for (const budgets of [
      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
      [2, 3, 5, 7, 11],
      [4, 0, 9, 13],
      [100],
    ]) {
      let f: Frontier = { b: 99, s: 0, i: "" };
      let total = 0;
      for (const budget of budgets) {
        const r = advanceFrontier(buckets, f, budget, 200);
        expect(r.admitted).toBeLessThanOrEqual(budget);
        total += r.admitted;
        f = r.frontier;
        // The admitted set is exactly the first `total` keys.
        const below = keys.filter((k) => compareKeys(k, f) < 0).length;
        expect(below).toBe(total);
        if (r.drained) expect(total).toBe(keys.length);
        else expect(r.admitted).toBe(budget);
      }
    }
  });

  it("never enters a bucket that is not settled", () => {
    const r = advanceFrontier(buckets, { b: 99, s: 0, i: "" }, 1_000, 101);
    expect(r.admitted).toBe(9 + 4);
    expect(r.drained).toBe(true);
    expect(r.frontier).toEqual({ b: 102, s: 0, i: "" });
    expect(keys.filter((k) => compareKeys(k, r.frontier) < 0)).toHaveLength(13);
  });

  it("counts the tickets below a watermark inside a bucket", () => {
    const m = buckets.get(100) as BucketCounts;
    expect(countBelow(m, 0, "")).toBe(0);
    expect(countBelow(m, 1, "")).toBe(3);
    expect(countBelow(m, 1, "bbbbbbbb")).toBe(4);
    expect(countBelow(m, 3, "")).toBe(7);
    expect(countBelow(m, 99, "")).toBe(9);
  });
});

/** A room state for placement tests. */
function roomState(over: Partial<RoomState>): RoomState {
  return {
    eventId: "evt_test0000",
    at: 0,
    openAt: 1_000_000,
    opened: true,
    openBucket: 1_000,
    rate: 60,
    ceiling: 120,
    signal: "headroom",
    soldOut: false,
    paused: false,
    admitted: 0,
    pre: null,
    preWaiting: 0,
    frontier: { b: 999, s: 0, i: "" },
    queue: { from: 999, admittedInFirst: 0, totals: [], isolates: [], tail: 0 },
    ...over,
  };
}

describe("placeTicket (position and wait at the edge)", () => {
  const pre = {
    total: 6,
    seed: SEED,
    admitted: 2,
    ids: ["aaaaaaaa", "bbbbbbbb"],
    offsets: [0, 4],
    counts: [4, 2],
  };

  it("admits shuffled slots below the pre watermark, and places the rest by slot", () => {
    const state = roomState({ pre, preWaiting: 4 });
    const tickets = [
      ...Array.from({ length: 4 }, (_, s) => ({ k: PRE_BUCKET, s, i: "aaaaaaaa" })),
      ...Array.from({ length: 2 }, (_, s) => ({ k: PRE_BUCKET, s, i: "bbbbbbbb" })),
    ];
    const placed = tickets.map((t) => placeTicket(t, state, 1_010_000));
    expect(placed.filter((p) => p.admitted)).toHaveLength(2);
    expect(placed.filter((p) => !p.admitted).map((p) => p.position)).toEqual(expect.arrayContaining([0, 1, 2, 3]));
    // 60/min = 1/s: position 3 waits 3 s.
    expect(Math.max(...placed.map((p) => p.estimatedWaitSeconds))).toBe(3);
  });

  it("queues a pre-sale ticket counted after the freeze after the shuffled ones", () => {
    const key = queueKey({ k: PRE_BUCKET, s: 5, i: "aaaaaaaa" }, pre, 1_000);
    expect(key).toEqual({ kind: "post", b: 999, s: 1, i: "aaaaaaaa:late" });
    const unknown = queueKey({ k: PRE_BUCKET, s: 0, i: "zzzzzzzz" }, pre, 1_000);
    expect(unknown).toEqual({ kind: "post", b: 999, s: 0, i: "zzzzzzzz:late" });
  });

  it("places a post-opening ticket after the pre-queue and the buckets ahead of it", () => {
    const state = roomState({
      pre: { ...pre, admitted: 6 },
      frontier: { b: 1_000, s: 2, i: "" },
      queue: { from: 1_000, admittedInFirst: 4, totals: [10, 6], isolates: [2, 3], tail: 0 },
    });
    expect(placeTicket({ k: 1_000, s: 1, i: "aaaaaaaa" }, state, 1_010_000).admitted).toBe(true);
    const same = placeTicket({ k: 1_000, s: 3, i: "aaaaaaaa" }, state, 1_010_000);
    expect(same).toMatchObject({ admitted: false, position: 2 });
    const next = placeTicket({ k: 1_001, s: 0, i: "aaaaaaaa" }, state, 1_010_000);
    expect(next).toMatchObject({ admitted: false, position: 6 });
    // A ticket of a second the room has not counted yet: everything counted, plus its isolate's earlier tickets.
    expect(placeTicket({ k: 1_005, s: 7, i: "aaaaaaaa" }, state, 1_010_000)).toMatchObject({ admitted: false, position: 10 + 6 - 4 + 7 });
    // A ticket whose bucket is not settled waits at least until it is.
    const fresh = placeTicket({ k: 1_001, s: 0, i: "aaaaaaaa" }, { ...state, rate: 6_000 }, 1_001_000);
    expect(fresh.estimatedWaitSeconds).toBe(Math.ceil((1_002_000 + SETTLE_MS - 1_001_000) / 1_000));
  });

  it("admits nobody before the opening; a pre-sale ticket's position is the pre-queue's size", () => {
    const state = roomState({ opened: false, preWaiting: 42 });
    const p = placeTicket({ k: PRE_BUCKET, s: 0, i: "aaaaaaaa" }, state, 900_000);
    expect(p).toMatchObject({ admitted: false, position: 42 });
    expect(p.estimatedWaitSeconds).toBe(Math.ceil((1_000_000 + SETTLE_MS - 900_000) / 1_000));
  });
});

const report = (health: Partial<InventoryReport["health"]>, counts: Partial<InventoryReport> = {}): InventoryReport => ({
  sectionId: "floor",
  shard: 0,
  at: 1,
  capacity: 100,
  available: 90,
  held: 10,
  sold: 0,
  ...counts,
  health: { holdLatencyP95Ms: 5, holdsPerSecond: 10, overloads: 0, activeHolds: 10, ...health },
});

describe("AIMD admission rate", () => {
  const policy = ratePolicy(1_200);

  it("derives floor, start and step from the organizer's ceiling", () => {
    expect(policy).toMatchObject({ ceiling: 1_200, floor: 60, initial: 600, increase: 60, decrease: 0.5 });
    expect(ratePolicy(1)).toMatchObject({ ceiling: 1, floor: 1, initial: 1 });
  });

  it("classifies reports: overloads and high latency, warm, headroom, nothing reported", () => {
    expect(healthSignal([report({ overloads: 2 })], policy).kind).toBe("overload");
    expect(healthSignal([report({}), report({ holdLatencyP95Ms: 150 })], policy).kind).toBe("overload");
    expect(healthSignal([report({ holdLatencyP95Ms: 70 })], policy).kind).toBe("steady");
    expect(healthSignal([report({ activeHolds: 60 }, { available: 40 })], policy).kind).toBe("steady");
    expect(healthSignal([report({})], policy).kind).toBe("headroom");
    expect(healthSignal([], policy).kind).toBe("headroom");
  });

  it("halves on overload at most once per cooldown, never below the floor; adds a step on headroom up to the ceiling", () => {
    const overload = { kind: "overload" as const, reason: "test" };
    const headroom = { kind: "headroom" as const, reason: "test" };
    let s = nextRate(600, overload, policy, 10_000, 0);
    expect(s).toEqual({ rate: 300, lastDecreaseAt: 10_000 });
    s = nextRate(s.rate, overload, policy, 11_000, s.lastDecreaseAt);
    expect(s.rate).toBe(300);
    for (let t = 12_000; t < 40_000; t += 2_000) s = nextRate(s.rate, overload, policy, t, s.lastDecreaseAt);
    expect(s.rate).toBe(60);
    for (let i = 0; i < 5; i++) s = nextRate(s.rate, headroom, policy, 50_000 + i, s.lastDecreaseAt);
    expect(s.rate).toBe(360);
    for (let i = 0; i < 50; i++) s = nextRate(s.rate, headroom, policy, 60_000 + i, s.lastDecreaseAt);
    expect(s.rate).toBe(1_200);
    expect(nextRate(700, { kind: "steady", reason: "" }, policy, 0, 0).rate).toBe(700);
  });
});

describe("queue tickets and passes", () => {
  const secret = env.SIGNING_SECRET;
  const now = 1_800_000_000_000;
  const event = { id: "evt_aaaaaaaaaaaaaaaaaaaa", saleStartsAt: new Date(now - 60_000).toISOString() };
  const ticket: QueueTicket = { e: event.id, u: "alice", t: now - 1_000, n: "nonce0000000", k: 1_799_999_999, s: 0, i: "isolate00000" };

  /** Replaces the payload of a token, keeping its MAC. */
  const alter = (token: string, patch: Record<string, unknown>) => {
    const [body, mac] = token.split(".") as [string, string];
    const payload = JSON.parse(new TextDecoder().decode(fromB64url(body))) as Record<string, unknown>;
    return `${b64url(new TextEncoder().encode(JSON.stringify({ ...payload, ...patch })))}.${mac}`;
  };

  it("accepts a ticket for its buyer and event", async () => {
    const token = await signTicket(secret, ticket);
    expect(await checkQueueTicket(secret, token, "alice", event, now)).toEqual({ ok: true, ticket });
  });

  it("refuses forged, altered, expired, future, transferred and other-event tickets", async () => {
    const token = await signTicket(secret, ticket);
    const refusal = async (t: string, user = "alice", ev = event, at = now) => {
      const r = await checkQueueTicket(secret, t, user, ev, at);
      return r.ok ? "accepted" : r.reason;
    };
    expect(await refusal(await signTicket("another-secret-0123456789abcdef", ticket))).toBe("invalid");
    expect(await refusal(alter(token, { t: 0 }))).toBe("invalid");
    expect(await refusal(alter(token, { u: "mallory" }), "mallory")).toBe("invalid");
    expect(await refusal(`${token}x`)).toBe("invalid");
    expect(await refusal("not-a-token")).toBe("invalid");
    expect(await refusal(await signPayload(secret, "queue-pass", ticket))).toBe("invalid");
    expect(await refusal(await signTicket(secret, { ...ticket, t: now + 3_600_000 }))).toBe("invalid");
    expect(await refusal(token, "mallory")).toBe("other_user");
    expect(await refusal(token, "alice", { ...event, id: "evt_bbbbbbbbbbbbbbbbbbbb" })).toBe("other_event");
    expect(await refusal(token, "alice", event, ticket.t + TICKET_TTL_MS)).toBe("expired");
    expect(await refusal(token, "alice", event, ticket.t + TICKET_TTL_MS - 1)).toBe("accepted");
  });

  it("passes are bound to buyer and event, expire, and cannot be forged or made from a ticket", async () => {
    const { pass, expiresAt } = await issuePass(secret, event.id, "alice", now);
    expect(expiresAt).toBe(now + PASS_TTL_MS);
    expect(await verifyQueuePass(secret, pass, "alice", event.id, now)).toBe(true);
    expect(await checkQueuePass(secret, pass, "bob", event.id, now)).toEqual({ ok: false, reason: "other_user" });
    expect(await checkQueuePass(secret, pass, "alice", "evt_bbbbbbbbbbbbbbbbbbbb", now)).toEqual({ ok: false, reason: "other_event" });
    expect(await checkQueuePass(secret, pass, "alice", event.id, expiresAt)).toEqual({ ok: false, reason: "expired" });
    expect(await verifyQueuePass(secret, alter(pass, { exp: now + 86_400_000 }), "alice", event.id, now)).toBe(false);
    expect(await verifyQueuePass(secret, alter(pass, { u: "bob" }), "bob", event.id, now)).toBe(false);
    expect(await verifyQueuePass("another-secret-0123456789abcdef", pass, "alice", event.id, now)).toBe(false);
    const forged = await signPayload("another-secret-0123456789abcdef", "queue-pass", { e: event.id, u: "alice", exp: now + 60_000 });
    expect(await verifyQueuePass(secret, forged, "alice", event.id, now)).toBe(false);
    expect(await verifyQueuePass(secret, await signTicket(secret, ticket), "alice", event.id, now)).toBe(false);
    expect(await verifyQueuePass(secret, "", "alice", event.id, now)).toBe(false);
  });
});

describe("ArrivalCounter (per-isolate arrival counts)", () => {
  it("numbers tickets per bucket and reports cumulative counts once, again after a failed send", () => {
    const c = new ArrivalCounter("isolate00000");
    expect([c.next("e1", 10), c.next("e1", 10), c.next("e1", 11), c.next("e1", PRE_BUCKET)]).toEqual([0, 1, 0, 0]);
    const r = c.take("e1");
    expect(r).toEqual({
      isolate: "isolate00000",
      counts: [
        [10, 2],
        [11, 1],
        [PRE_BUCKET, 1],
      ],
    });
    expect(c.take("e1")).toBeNull();
    if (r) c.restore("e1", r);
    c.next("e1", 11);
    expect(c.take("e1")?.counts).toEqual([
      [10, 2],
      [11, 2],
      [PRE_BUCKET, 1],
    ]);
    expect(c.take("other")).toBeNull();
  });
});

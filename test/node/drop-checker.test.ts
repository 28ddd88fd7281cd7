import { describe, expect, it } from "vitest";
import { check } from "../../bench/drop/checker.ts";
import type { FinalState, History, RequestRecord, Seen, Step } from "../../bench/drop/history.ts";
import { spearman } from "../../bench/lib/spearman.ts";
import { mulberry32 } from "../../bench/lib/zipf.ts";

/**
 * The drop's checker on small hand-built histories: a clean sale passes; each planted defect (a seat
 * sold twice, a charge without a ticket, a lost order, a buyer over the limit, admission out of order, an
 * answer without a problem code) is caught, with the buyer, the request ids and the timeline.
 */

const EVENT = "evt_0123456789abcdefghjk";
const oid = (n: number, section = "ga", shard = 0) => `ord_${String(n).padStart(20, "0")}.${EVENT}.${section}.${shard}`;
const hid = (n: number, section = "ga", shard = 0) => oid(n, section, shard).replace(/^ord_/, "hld_");

/** Builds a history buyer by buyer, with times in ms since the origin. */
class Builder {
  records: History["records"] = [];
  private id = 1;
  req(buyer: string, step: Step, at: number, status: number | undefined, extra: Partial<RequestRecord> = {}, seen?: Seen): RequestRecord {
    const r: RequestRecord = {
      kind: "request",
      id: this.id++,
      buyer,
      step,
      method: step === "poll" || step === "event" || step === "order" ? "GET" : "POST",
      path: step === "order" ? `/v1/orders/${seen?.orderId}` : `/v1/${step}`,
      attempt: 1,
      start: at,
      end: at + 20,
      ...(status !== undefined ? { status, requestId: `req-${this.id}` } : {}),
      ...extra,
      ...(seen ? { seen } : {}),
    };
    this.records.push(r);
    return r;
  }
  /** A buyer who joins at `joinAt`, is admitted at `admitAt`, holds and pays order `n`. */
  buyer(name: string, joinAt: number, admitAt: number, order?: { n: number; section?: string; seats?: string[]; quantity?: number }) {
    this.req(name, "join", joinAt, 202, {}, { state: "waiting", position: 1 });
    this.req(name, "poll", admitAt - 1_000, 200, {}, { state: "waiting", position: 1 });
    this.req(name, "poll", admitAt, 200, {}, { state: "admitted", position: 0 });
    if (!order) return;
    const section = order.section ?? "ga";
    const seats = order.seats ?? [];
    const quantity = order.quantity ?? (seats.length || 2);
    const seen = { sectionId: section, seats, quantity, total: quantity * 100 };
    this.req(name, "hold", admitAt + 100, 201, {}, { ...seen, holdId: hid(order.n, section) });
    this.req(name, "pay", admitAt + 200, 201, { token: "tok_ok" }, { ...seen, orderId: oid(order.n, section) });
    this.req(name, "order", admitAt + 300, 200, {}, { ...seen, orderId: oid(order.n, section) });
  }
}

/** A clean sale: 40 buyers after the opening admitted in join order, each with a 2-place GA order, one seated buyer. */
function cleanSale(): { history: History; final: FinalState } {
  const b = new Builder();
  for (let i = 0; i < 40; i++) b.buyer(`b${i}`, 10_000 + i * 500, 20_000 + i * 500, { n: i });
  b.buyer("s1", 5_000, 19_000, { n: 100, section: "a", seats: ["1-1", "1-2"] });
  const history: History = {
    eventId: EVENT,
    origin: 0,
    openAt: 8_000,
    perCustomerLimit: 4,
    capacity: { ga: 100, a: 10 },
    records: b.records,
  };
  const orders = (i: number) => ({ id: oid(i), sectionId: "ga", seats: [], quantity: 2, total: 200 });
  const shardOrders: FinalState["shardOrders"] = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`b${i}`, [orders(i)]]));
  shardOrders.s1 = [{ id: oid(100, "a"), sectionId: "a", seats: ["1-1", "1-2"], quantity: 2, total: 200 }];
  const charges: FinalState["charges"] = [
    ...Array.from({ length: 40 }, (_, i) => ({
      idempotencyKey: `${oid(i)}:1`,
      chargeId: `ch_${i}`,
      amount: 200,
      status: "succeeded" as const,
    })),
    { idempotencyKey: `${oid(100, "a")}:1`, chargeId: "ch_s1", amount: 200, status: "succeeded" },
    // A declined-then-voided attempt of another order: refunded, fine.
    { idempotencyKey: `${oid(5)}:0`, chargeId: "ch_void", amount: 200, status: "refunded" },
  ];
  const final: FinalState = {
    availability: [
      { id: "ga", available: 20, held: 0, sold: 80, capacity: 100 },
      { id: "a", available: 8, held: 0, sold: 2, capacity: 10 },
    ],
    seatMaps: {
      a: Array.from({ length: 10 }, (_, i) => ({ id: `1-${i + 1}`, status: i < 2 ? ("sold" as const) : ("available" as const) })),
    },
    reconciliation: { soldInInventory: 41, storedInShards: 41, missing: [], extra: [], duplicated: [] },
    charges,
    shardOrders,
    deadLetters: 0,
  };
  return { history, final };
}

describe("drop checker", () => {
  it("passes a clean sale and measures it", () => {
    const { history, final } = cleanSale();
    const v = check(history, final);
    expect(v.violations).toEqual([]);
    expect(v.ok).toBe(true);
    expect(v.orders).toBe(41);
    expect(v.ticketsSold).toBe(82);
    expect(v.admission.afterOpen).toMatchObject({ n: 40, rho: 1, wide: 0, concordance: 1 });
    expect(v.admission.afterOpen.pairs).toBeGreaterThan(0);
  });

  /** 120 buyers joining 100 ms apart after the opening, each told "waiting" at its join and admitted at a scrambled time 60–120 s in. */
  const lateLearners = (history: History, waitingPollBeforeAdmission: boolean) => {
    const b = new Builder();
    const rng = mulberry32(5);
    for (let i = 0; i < 120; i++) {
      const joinAt = 10_000 + i * 100;
      const admitAt = 60_000 + Math.floor(rng() * 60_000);
      b.req(`w${i}`, "join", joinAt, 202, {}, { state: "waiting", position: i + 1 });
      if (waitingPollBeforeAdmission) b.req(`w${i}`, "poll", admitAt - 5_000, 200, {}, { state: "waiting", position: 1 });
      b.req(`w${i}`, "poll", admitAt, 200, {}, { state: "admitted", position: 0 });
    }
    for (const r of b.records) if (r.kind === "request") r.id += 10_000;
    history.records.push(...b.records);
  };

  it("does not rank buyers who learned of their admission over 30 s after their last 'waiting' (their polls waited)", () => {
    const { history, final } = cleanSale();
    lateLearners(history, false);
    const v = check(history, final);
    expect(v.violations).toEqual([]);
    expect(v.admission.afterOpen).toMatchObject({ n: 40, rho: 1, wide: 120 });
  });

  it("catches admission out of join order among buyers whose admission time is known within 30 s", () => {
    const { history, final } = cleanSale();
    lateLearners(history, true);
    const v = check(history, final);
    expect(v.admission.afterOpen.n).toBe(160);
    expect(v.admission.afterOpen.rho).toBeLessThan(0.5);
    expect(v.admission.afterOpen.pairs).toBeGreaterThan(1_000);
    expect(v.admission.afterOpen.concordance).toBeLessThan(0.9);
    expect(v.violations.filter((x) => x.rule === "admission_order").map((x) => x.message)).toContainEqual(
      expect.stringMatching(/^after the opening, admission follows join order in [\d.]+ % < 90 % of \d+ pairs/),
    );
  });

  it("catches a seat sold twice, with both buyers' requests and timelines", () => {
    const { history, final } = cleanSale();
    const b = new Builder();
    b.records = history.records;
    Object.assign(b, { id: 10_000 });
    b.buyer("s2", 6_000, 21_000, { n: 101, section: "a", seats: ["1-2", "1-3"] });
    final.shardOrders.s2 = [{ id: oid(101, "a"), sectionId: "a", seats: ["1-2", "1-3"], quantity: 2, total: 200 }];
    final.charges.push({ idempotencyKey: `${oid(101, "a")}:1`, chargeId: "ch_s2", amount: 200, status: "succeeded" });
    final.availability[1] = { id: "a", available: 6, held: 0, sold: 4, capacity: 10 };
    const v = check(history, final);
    expect(v.ok).toBe(false);
    const twice = v.violations.find((x) => x.rule === "seat_sold_twice");
    expect(twice?.message).toContain("a/1-2");
    expect(twice?.buyers).toEqual(["s1", "s2"]);
    expect(twice?.requests.length).toBeGreaterThanOrEqual(4);
    expect(twice?.requestIds.length).toBe(twice?.requests.length);
    expect(twice?.timeline.some((l) => l.includes("pay POST") && l.includes(oid(101, "a")))).toBe(true);
  });

  it("catches a charge with no ticket (a succeeded charge no buyer got an order for)", () => {
    const { history, final } = cleanSale();
    const b = new Builder();
    b.records = history.records;
    Object.assign(b, { id: 20_000 });
    // b50 held, its payment timed out; the provider kept the charge and nobody refunded it.
    b.req("b50", "hold", 30_000, 201, {}, { holdId: hid(50), sectionId: "ga", quantity: 1, total: 100 });
    b.req("b50", "pay", 30_100, undefined, { error: "timeout", token: "tok_ok" });
    final.charges.push({ idempotencyKey: `${oid(50)}:1`, chargeId: "ch_orphan", amount: 100, status: "succeeded" });
    const v = check(history, final);
    expect(v.ok).toBe(false);
    const orphan = v.violations.find((x) => x.rule === "charge_without_order");
    expect(orphan?.message).toContain("ch_orphan");
    expect(orphan?.buyers).toEqual(["b50"]);
    expect(orphan?.timeline.join("\n")).toContain("no answer: timeout");
    // The same charge refunded is fine.
    (final.charges.at(-1) as FinalState["charges"][number]).status = "refunded";
    expect(check(history, final).ok).toBe(true);
  });

  it("catches a lost order: answered 201, then never reaches the buyer's shard", () => {
    const { history, final } = cleanSale();
    final.shardOrders.b7 = [];
    final.reconciliation = { ...final.reconciliation, storedInShards: 40, missing: [oid(7)] };
    const v = check(history, final);
    expect(v.ok).toBe(false);
    const lost = v.violations.find((x) => x.rule === "order_not_in_shard");
    expect(lost?.buyers).toEqual(["b7"]);
    expect(lost?.message).toContain(oid(7));
    expect(lost?.requests.length).toBeGreaterThan(0);
    expect(v.violations.find((x) => x.rule === "reconciliation")?.message).toContain("missing");
  });

  it("catches a buyer over the per-customer limit", () => {
    const { history, final } = cleanSale();
    const b = new Builder();
    b.records = history.records;
    Object.assign(b, { id: 30_000 });
    // b3 already has 2 places; a second order of 3 makes 5 > 4.
    b.req("b3", "hold", 40_000, 201, {}, { holdId: hid(60), sectionId: "ga", quantity: 3, total: 300 });
    b.req("b3", "pay", 40_100, 201, { token: "tok_ok" }, { orderId: oid(60), sectionId: "ga", seats: [], quantity: 3, total: 300 });
    final.shardOrders.b3?.push({ id: oid(60), sectionId: "ga", seats: [], quantity: 3, total: 300 });
    final.charges.push({ idempotencyKey: `${oid(60)}:1`, chargeId: "ch_more", amount: 300, status: "succeeded" });
    final.availability[0] = { id: "ga", available: 17, held: 0, sold: 83, capacity: 100 };
    const v = check(history, final);
    expect(v.violations.map((x) => x.rule)).toEqual(["over_limit"]);
    expect(v.violations[0]?.message).toContain("5 places");
    expect(v.violations[0]?.buyers).toEqual(["b3"]);
  });

  it("catches sold + held + available ≠ capacity and a sale no buyer knows of", () => {
    const { history, final } = cleanSale();
    final.availability[0] = { id: "ga", available: 20, held: 1, sold: 80, capacity: 100 };
    expect(check(history, final).violations.map((x) => x.rule)).toEqual(["capacity"]);
    final.availability[0] = { id: "ga", available: 18, held: 0, sold: 82, capacity: 100 };
    expect(check(history, final).violations.map((x) => x.rule)).toEqual(["sold_count"]);
  });

  it("catches a later joiner admitted while an earlier one is still told to wait", () => {
    const { history, final } = cleanSale();
    // b0 joined first (10 s) but was admitted last: while it was told to wait at 40 s, b39 (joined at 29.5 s) was in.
    for (const r of history.records)
      if (r.kind === "request" && r.buyer === "b0" && r.step === "poll") {
        r.start += 21_000;
        r.end += 21_000;
      }
    const v = check(history, final);
    const inv = v.violations.filter((x) => x.rule === "admission_order");
    expect(inv.length).toBeGreaterThan(0);
    expect(inv[0]?.buyers[0]).toBe("b0");
    expect(inv[0]?.message).toMatch(/still told to wait/);
  });

  it("catches error answers without a problem code or Retry-After, 500s, and connections dropped outside a kill", () => {
    const { history, final } = cleanSale();
    const b = new Builder();
    b.records = history.records;
    Object.assign(b, { id: 40_000 });
    b.req("x1", "event", 1_000, 502);
    b.req("x2", "hold", 1_000, 503, { code: "overloaded" });
    b.req("x3", "pay", 1_000, 500, { code: "internal_error" });
    b.req("x4", "poll", 50_000, undefined, { error: "connection reset" });
    const v = check(history, final);
    expect(v.counts).toEqual({ unclear_answer: 2, server_error: 2, dropped_connection: 1 });
    // Inside a kill window a dropped connection is the kill's.
    history.records.push({ kind: "fault", name: "kill", start: 49_000, end: 52_000 });
    expect(check(history, final).counts.dropped_connection).toBeUndefined();
  });

  it("computes Spearman's rank correlation, ties averaged", () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1);
    expect(spearman([1, 2, 3, 4], [40, 30, 20, 10])).toBeCloseTo(-1);
    expect(spearman([1, 2, 3, 4, 5], [1, 1, 2, 2, 3])).toBeCloseTo(0.9487, 3);
  });
});

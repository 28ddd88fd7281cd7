/**
 * The drop's checker (in the manner of Jepsen's history checkers): reads only the history the buyers
 * recorded and the final state the public and admin API answered, and reports every invariant that does
 * not hold, each with a counterexample: the buyer(s), the drop's request ids and the server's
 * X-Request-Ids, and the buyer's timeline.
 *
 * Invariants (DESIGN.md, "Invariants"):
 * - seat_sold_twice: no seat is in two orders;
 * - capacity: sold + held + available = capacity in every section;
 * - sold_count: what the sections say is sold equals the places of the orders the buyers got (or find in
 *   their shard);
 * - charge_without_order / double_charge / charge_amount / order_without_charge: every charge the
 *   provider kept as succeeded belongs to exactly one order of the same amount; refunded charges are fine;
 * - order_not_in_shard / reconciliation: every order answered to a buyer is in the buyer's shard once the
 *   queues drained, and reconciliation finds nothing missing, extra or duplicated;
 * - order_unreadable: an order answered 201 reads back (GET /v1/orders/:id) for its owner;
 * - over_limit: no buyer has more places than the event's per-customer limit;
 * - admission_order: after the opening, admission follows join order (at least {@link MIN_CONCORDANCE} of the
 *   pairs whose join order and admission order are both known agree; no definite inversion); the pre-queue
 *   is shuffled (Spearman ≤ {@link MAX_PRESALE_RHO});
 * - unclear_answer / server_error / dropped_connection: every request was answered with a status (errors
 *   as problem documents with a code, 429/503 with Retry-After, no 500) or timed out; a connection dropped
 *   without an answer only while the server was being killed.
 */

import { spearman } from "../lib/spearman.ts";
import { type FaultRecord, type FinalState, type History, orderIdOfCharge, type RequestRecord } from "./history.ts";

type Rule =
  | "seat_sold_twice"
  | "capacity"
  | "sold_count"
  | "charge_without_order"
  | "double_charge"
  | "charge_amount"
  | "order_without_charge"
  | "order_not_in_shard"
  | "reconciliation"
  | "order_unreadable"
  | "over_limit"
  | "admission_order"
  | "unclear_answer"
  | "server_error"
  | "dropped_connection";

/** One invariant that does not hold, with its counterexample. */
interface Violation {
  rule: Rule;
  message: string;
  buyers: string[];
  /** The drop's request ids (history) involved. */
  requests: number[];
  /** The server's X-Request-Id of those requests (to find their log lines). */
  requestIds: string[];
  /** The buyers' requests in time order, one line each. */
  timeline: string[];
}

/** The checker's verdict. */
export interface Verdict {
  ok: boolean;
  violations: Violation[];
  /** How many violations of each rule (all of them, also beyond the ones kept with counterexamples). */
  counts: Partial<Record<Rule, number>>;
  orders: number;
  ticketsSold: number;
  /**
   * afterOpen.n: buyers ranked for ρ; wide: buyers not ranked (admission interval over 30 s); pairs: pairs
   * of buyers whose join order and admission order are both known; concordance: the share of them in order.
   */
  admission: {
    afterOpen: { n: number; rho: number; wide: number; pairs: number; concordance: number };
    preSale: { n: number; rho: number };
  };
}

/**
 * Admission after the opening must follow join order: of the pairs of buyers whose order is known both
 * ways (A's join answered before B's was sent; A knew of its admission before B's last "waiting" poll was
 * sent, or the reverse), at least this share must be in join order. Random admission gives 0.5. Pairs that
 * joined within the same second may be in either order (the queue orders by arrival second), hence not 1;
 * {@link JOIN_GAP_MS} inversions are the sharp test. Load only makes the intervals wider and the pairs
 * fewer, never the share lower; Spearman's ρ over estimated admission times (reported, not judged) does
 * drop under load: 0.43 in a loaded CI run with no definite inversion.
 */
const MIN_CONCORDANCE = 0.9;
/**
 * A definite inversion: buyer A joined more than this before B (the queue orders by arrival second), yet
 * B's admitting answer had arrived before A's poll that still answered "waiting" was even sent.
 */
const JOIN_GAP_MS = 2_000;
/** The pre-queue is drawn at random: a ρ above this says it was not shuffled. */
const MAX_PRESALE_RHO = 0.5;
/** Below this many known pairs the concordance is not judged. */
const MIN_PAIRS = 1_000;
/**
 * Below this many buyers a rank correlation says nothing; not judged. The times are interval-censored (a
 * buyer learns of its admission at its next poll, 2–30 s later, and later still on a loaded server), so
 * small samples swing widely: 30 buyers of one run gave ρ = −0.5 with no definite inversion among them.
 */
const MIN_RANKED = 100;
/**
 * An admission interval (last "waiting" poll sent → admitting answer) wider than this, the longest poll
 * interval the server advises, says next to nothing of when the admission happened: such a buyer learned
 * of it late because its polls waited (on a loaded server, or on the client's slot queue behind thousands
 * of other polls). It is not ranked for ρ; its definite inversions still count.
 */
const MAX_ADMISSION_INTERVAL_MS = 30_000;
/** Counterexamples kept per rule (the counts are complete). */
const KEEP_PER_RULE = 5;
/** A dropped connection this soon around a kill window is the kill's (ms). */
const KILL_GRACE_MS = 3_000;

/** An order a buyer was answered (201 or a replayed 200), or found in their shard. */
interface KnownOrder {
  id: string;
  buyer: string;
  sectionId: string;
  seats: string[];
  quantity: number;
  total: number;
  /** Requests that answered it. */
  requests: RequestRecord[];
  /** Answered 201 (created) to the buyer. */
  created: boolean;
}

const fmt = (ms: number) => `${ms >= 0 ? "+" : "-"}${(Math.abs(ms) / 1000).toFixed(3)}s`;

/** One line of a timeline. */
function describeRequest(r: RequestRecord): string {
  const what = r.error
    ? `no answer: ${r.error}`
    : `${r.status}${r.code ? ` ${r.code}` : ""}${r.retryAfter !== undefined ? ` Retry-After ${r.retryAfter}` : ""}`;
  const seen = r.seen
    ? [
        r.seen.holdId,
        r.seen.orderId,
        r.seen.seats?.length ? `seats ${r.seen.seats.join(",")}` : r.seen.quantity ? `qty ${r.seen.quantity}` : "",
        r.seen.state,
      ]
        .filter(Boolean)
        .join(" ")
    : "";
  return `${fmt(r.start)} #${r.id} ${r.step}${r.attempt > 1 ? ` (try ${r.attempt})` : ""} ${r.method} ${r.path}${r.token ? ` [${r.token}]` : ""} → ${what}${seen ? ` ${seen}` : ""} (${Math.round(r.end - r.start)} ms${r.requestId ? `, req ${r.requestId}` : ""})`;
}

/** Checks a drop's history against the final state. Pure: the same inputs give the same verdict. */
export function check(history: History, final: FinalState): Verdict {
  const requests = history.records.filter((r): r is RequestRecord => r.kind === "request");
  const byBuyer = new Map<string, RequestRecord[]>();
  for (const r of requests) {
    const list = byBuyer.get(r.buyer);
    if (list) list.push(r);
    else byBuyer.set(r.buyer, [r]);
  }
  const kills = history.records.filter((r): r is FaultRecord => r.kind === "fault" && r.name === "kill");
  const violations: Violation[] = [];
  const counts: Partial<Record<Rule, number>> = {};
  const add = (rule: Rule, message: string, buyers: string[], reqs: RequestRecord[] = []) => {
    counts[rule] = (counts[rule] ?? 0) + 1;
    if ((counts[rule] ?? 0) > KEEP_PER_RULE) return;
    const timeline = buyers.flatMap((b) => [`buyer ${b}:`, ...(byBuyer.get(b) ?? []).map((r) => `  ${describeRequest(r)}`)]);
    violations.push({
      rule,
      message,
      buyers,
      requests: reqs.map((r) => r.id),
      requestIds: reqs.map((r) => r.requestId).filter((x): x is string => Boolean(x)),
      timeline,
    });
  };

  // ── the orders the buyers know of ──
  const orders = new Map<string, KnownOrder>();
  for (const r of requests) {
    if ((r.step !== "pay" && r.step !== "order") || !r.status || r.status >= 300 || !r.seen?.orderId) continue;
    const id = r.seen.orderId;
    const known = orders.get(id);
    if (known) {
      known.requests.push(r);
      known.created ||= r.step === "pay" && r.status === 201;
      continue;
    }
    orders.set(id, {
      id,
      buyer: r.buyer,
      sectionId: r.seen.sectionId ?? "",
      seats: r.seen.seats ?? [],
      quantity: r.seen.quantity ?? 0,
      total: r.seen.total ?? 0,
      requests: [r],
      created: r.step === "pay" && r.status === 201,
    });
  }
  const shardIds = new Map<string, Set<string>>();
  for (const [buyer, list] of Object.entries(final.shardOrders)) {
    shardIds.set(buyer, new Set(list.map((o) => o.id)));
    for (const o of list)
      if (!orders.has(o.id))
        orders.set(o.id, {
          ...o,
          buyer,
          requests: [],
          created: false,
          seats: o.seats,
          sectionId: o.sectionId,
          quantity: o.quantity,
          total: o.total,
        });
  }

  // ── no seat sold twice ──
  const seatOwner = new Map<string, KnownOrder>();
  for (const o of orders.values())
    for (const seat of o.seats) {
      const key = `${o.sectionId}/${seat}`;
      const other = seatOwner.get(key);
      if (other && other.id !== o.id)
        add(
          "seat_sold_twice",
          `seat ${key} is in order ${other.id} (buyer ${other.buyer}) and in order ${o.id} (buyer ${o.buyer})`,
          [other.buyer, o.buyer],
          [...other.requests, ...o.requests],
        );
      else seatOwner.set(key, o);
    }

  // ── capacity and sold counts ──
  const soldBySection = new Map<string, number>();
  for (const o of orders.values()) soldBySection.set(o.sectionId, (soldBySection.get(o.sectionId) ?? 0) + o.quantity);
  for (const s of final.availability) {
    const cap = history.capacity[s.id];
    if (s.available + s.held + s.sold !== s.capacity || (cap !== undefined && cap !== s.capacity))
      add("capacity", `section ${s.id}: available ${s.available} + held ${s.held} + sold ${s.sold} ≠ capacity ${cap ?? s.capacity}`, []);
    const known = soldBySection.get(s.id) ?? 0;
    if (s.sold !== known)
      add("sold_count", `section ${s.id}: availability says ${s.sold} sold, the buyers' orders hold ${known} places`, []);
  }
  for (const [sectionId, seats] of Object.entries(final.seatMaps)) {
    const sold = seats.filter((s) => s.status === "sold").length;
    const known = soldBySection.get(sectionId) ?? 0;
    if (sold !== known)
      add("sold_count", `section ${sectionId}: the seat map shows ${sold} sold, the buyers' orders hold ${known} seats`, []);
    for (const [key, o] of seatOwner) {
      if (!key.startsWith(`${sectionId}/`)) continue;
      const seat = seats.find((s) => s.id === key.slice(sectionId.length + 1));
      if (seat?.status !== "sold")
        add("sold_count", `seat ${key} of order ${o.id} is ${seat?.status ?? "missing"} in the seat map`, [o.buyer], o.requests);
    }
  }

  // ── charges ──
  const marker = `.${history.eventId}.`;
  const charged = new Map<string, FinalState["charges"]>();
  for (const c of final.charges) {
    if (!c.idempotencyKey.includes(marker) || c.status !== "succeeded") continue;
    const id = orderIdOfCharge(c.idempotencyKey);
    charged.set(id, [...(charged.get(id) ?? []), c]);
  }
  for (const [id, list] of charged) {
    const o = orders.get(id);
    if (!o) {
      add(
        "charge_without_order",
        `charge ${list.map((c) => `${c.chargeId} (${c.idempotencyKey}, ${c.amount})`).join(", ")} succeeded and was not refunded, but no buyer got order ${id}`,
        buyerOfOrderId(id, requests),
        requestsOfOrderId(id, requests),
      );
      continue;
    }
    if (list.length > 1)
      add(
        "double_charge",
        `order ${id} was charged ${list.length} times: ${list.map((c) => c.chargeId).join(", ")}`,
        [o.buyer],
        o.requests,
      );
    for (const c of list)
      if (c.amount !== o.total)
        add("charge_amount", `order ${id} totals ${o.total} but charge ${c.chargeId} took ${c.amount}`, [o.buyer], o.requests);
  }
  for (const o of orders.values())
    if (!charged.has(o.id))
      add("order_without_charge", `order ${o.id} (buyer ${o.buyer}) has no succeeded charge at the provider`, [o.buyer], o.requests);

  // ── every answered order in the buyer's shard; reconciliation clean ──
  for (const o of orders.values()) {
    if (!o.requests.length) continue;
    if (!shardIds.get(o.buyer)?.has(o.id))
      add(
        "order_not_in_shard",
        `order ${o.id} was answered ${o.created ? "201" : "200"} to buyer ${o.buyer} but is not in the buyer's shard after the queues drained`,
        [o.buyer],
        o.requests,
      );
  }
  const rec = final.reconciliation;
  for (const [kind, ids] of [
    ["missing", rec.missing],
    ["extra", rec.extra],
    ["duplicated", rec.duplicated],
  ] as const)
    for (const id of ids) {
      const o = orders.get(id);
      add("reconciliation", `reconciliation: order ${id} is ${kind}`, o ? [o.buyer] : buyerOfOrderId(id, requests), o?.requests ?? []);
    }

  // ── orders read back ──
  for (const o of orders.values()) {
    if (!o.created) continue;
    const reads = (byBuyer.get(o.buyer) ?? []).filter((r) => r.step === "order" && r.path.endsWith(`/${o.id}`));
    const last = reads.at(-1);
    if (last?.status !== undefined && last.status !== 200)
      add(
        "order_unreadable",
        `order ${o.id} answered 201, then GET answered ${last.status}${last.code ? ` ${last.code}` : ""}`,
        [o.buyer],
        [...o.requests, last],
      );
  }

  // ── per-customer limit ──
  const places = new Map<string, KnownOrder[]>();
  for (const o of orders.values()) places.set(o.buyer, [...(places.get(o.buyer) ?? []), o]);
  for (const [buyer, list] of places) {
    const n = list.reduce((a, o) => a + o.quantity, 0);
    if (n > history.perCustomerLimit)
      add(
        "over_limit",
        `buyer ${buyer} holds ${n} places in ${list.length} orders (${list.map((o) => o.id).join(", ")}); the limit is ${history.perCustomerLimit}`,
        [buyer],
        list.flatMap((o) => o.requests),
      );
  }

  // ── admission order ──
  interface Admission {
    buyer: string;
    joinedAt: number;
    joinStart: number;
    joinEnd: number;
    admittedAt: number;
    /** Start of the last poll answered "waiting" (the buyer was not admitted yet when it was sent). */
    lastWaiting: number;
  }
  const joined: Admission[] = [];
  for (const [buyer, list] of byBuyer) {
    const join = list.find((r) => r.step === "join" && r.status === 202);
    const queue = list.filter((r) => (r.step === "join" || r.step === "poll") && r.status !== undefined && r.status < 300);
    const admitted = queue.find((r) => r.seen?.state === "admitted");
    if (!join || !admitted) continue;
    const waiting = queue.filter((r) => r.seen?.state === "waiting" && r.end <= admitted.start);
    joined.push({
      buyer,
      joinedAt: (join.start + join.end) / 2,
      joinStart: join.start,
      joinEnd: join.end,
      admittedAt: admitted.end,
      lastWaiting: waiting.at(-1)?.start ?? join.start,
    });
  }
  // A buyer's admission happened between its last "waiting" poll and its admitting answer; the midpoint
  // estimates it. Buyers whose interval spans a kill learned of it only after the restart: not ranked.
  const spansKill = (j: Admission) => kills.some((k) => j.lastWaiting <= k.end && j.admittedAt >= k.start);
  const after = joined.filter((j) => j.joinStart >= history.openAt && !spansKill(j));
  const ranked = after.filter((j) => j.admittedAt - j.lastWaiting <= MAX_ADMISSION_INTERVAL_MS);
  const pre = joined.filter((j) => j.joinEnd < history.openAt);
  const rhoAfter = spearman(
    ranked.map((j) => j.joinedAt),
    ranked.map((j) => (j.lastWaiting + j.admittedAt) / 2),
  );
  const rhoPre = spearman(
    pre.map((j) => j.joinedAt),
    pre.map((j) => j.admittedAt),
  );
  // One pass over the pairs in join order. Known both ways: A's join answered before B's was sent, and one
  // knew of its admission before the other's last "waiting" poll was sent. A definite inversion is a pair
  // out of order whose joins are over JOIN_GAP_MS apart (the first per earlier buyer is reported).
  const byJoin = [...after].sort((a, b) => a.joinEnd - b.joinEnd);
  let inOrder = 0;
  let outOfOrder = 0;
  const inversions: [Admission, Admission][] = [];
  for (let i = 0; i < byJoin.length; i++) {
    const a = byJoin[i] as Admission;
    let inverted = false;
    for (let k = i + 1; k < byJoin.length; k++) {
      const b = byJoin[k] as Admission;
      if (b.joinStart <= a.joinEnd) continue;
      if (a.admittedAt < b.lastWaiting) inOrder++;
      else if (b.admittedAt < a.lastWaiting) {
        outOfOrder++;
        if (!inverted && b.joinStart - a.joinEnd >= JOIN_GAP_MS) {
          inversions.push([a, b]);
          inverted = true;
        }
      }
    }
  }
  const pairs = inOrder + outOfOrder;
  const concordance = pairs === 0 ? 1 : inOrder / pairs;
  if (pairs >= MIN_PAIRS && concordance < MIN_CONCORDANCE)
    add(
      "admission_order",
      `after the opening, admission follows join order in ${(concordance * 100).toFixed(1)} % < ${MIN_CONCORDANCE * 100} % of ${pairs} pairs whose order is known both ways`,
      [],
    );
  // Definite inversions: A joined well before B, and B knew it was admitted before A was still told to wait.
  for (const [a, b] of inversions)
    add(
      "admission_order",
      `buyer ${b.buyer} joined at ${fmt(b.joinStart)}, ${((b.joinStart - a.joinEnd) / 1000).toFixed(1)} s after ${a.buyer} (joined by ${fmt(a.joinEnd)}), and was admitted by ${fmt(b.admittedAt)}, while ${a.buyer} was still told to wait at ${fmt(a.lastWaiting)}`,
      [a.buyer, b.buyer],
    );
  if (pre.length >= MIN_RANKED && rhoPre > MAX_PRESALE_RHO)
    add(
      "admission_order",
      `the pre-queue (${pre.length} buyers who joined before the opening) was admitted in join order (ρ = ${rhoPre.toFixed(3)}): not shuffled`,
      [],
    );

  // ── every request answered clearly ──
  for (const r of requests) {
    if (r.status === undefined) {
      if (!r.error) add("unclear_answer", `request #${r.id} has neither an answer nor an error`, [r.buyer], [r]);
      else if (
        !/timeout|timed out/i.test(r.error) &&
        !kills.some((k) => r.end >= k.start - KILL_GRACE_MS && r.start <= k.end + KILL_GRACE_MS)
      )
        add("dropped_connection", `request #${r.id} lost its connection (${r.error}) outside a kill window`, [r.buyer], [r]);
      continue;
    }
    if (r.status >= 400 && !r.code)
      add("unclear_answer", `request #${r.id} answered ${r.status} without a problem document code`, [r.buyer], [r]);
    if ((r.status === 429 || r.status === 503) && r.retryAfter === undefined)
      add("unclear_answer", `request #${r.id} answered ${r.status} without Retry-After`, [r.buyer], [r]);
    if (r.status >= 500 && r.status !== 503)
      add("server_error", `request #${r.id} answered ${r.status}${r.code ? ` ${r.code}` : ""}`, [r.buyer], [r]);
  }

  let ticketsSold = 0;
  for (const o of orders.values()) ticketsSold += o.quantity;
  return {
    ok: violations.length === 0,
    violations,
    counts,
    orders: orders.size,
    ticketsSold,
    admission: {
      afterOpen: { n: ranked.length, rho: rhoAfter, wide: after.length - ranked.length, pairs, concordance },
      preSale: { n: pre.length, rho: rhoPre },
    },
  };
}

/** Buyers whose requests name order `id` (its hold id shares the order's key). */
function buyerOfOrderId(id: string, requests: RequestRecord[]): string[] {
  const holdId = id.replace(/^ord_/, "hld_");
  return [...new Set(requests.filter((r) => r.seen?.holdId === holdId || r.seen?.orderId === id).map((r) => r.buyer))];
}

function requestsOfOrderId(id: string, requests: RequestRecord[]): RequestRecord[] {
  const holdId = id.replace(/^ord_/, "hld_");
  return requests.filter((r) => r.seen?.holdId === holdId || r.seen?.orderId === id);
}

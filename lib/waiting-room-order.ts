import { z } from "zod";

/**
 * The waiting room's queue order: pure functions shared by the edge (which places a ticket) and the
 * WaitingRoom DO (which moves the admission watermark). No I/O, no clock: every time is a parameter.
 *
 * How a ticket is placed. Joining is stateless, so the order has to be computable from the ticket alone
 * plus the room state the DO publishes. Each edge isolate numbers the tickets it issues per arrival
 * bucket (`s` = 0, 1, 2… within bucket `k` in isolate `i`) and reports only cumulative counts per
 * (isolate, bucket) to the DO, piggybacked on its once-a-second read of the room state. From those counts
 * the DO knows the exact number of tickets below any watermark, so it can admit exactly `rate × dt`.
 *
 * - After the opening, a ticket's key is `(k, s, i)`: arrival second first (first come, first served to
 *   the second), then round-robin over the isolates that issued tickets in that second, by local arrival
 *   order. The watermark (`Frontier`) is such a key; every ticket strictly below it is admitted.
 * - Before the opening every ticket goes into bucket {@link PRE_BUCKET}. At the opening the DO freezes the
 *   per-isolate counts, lays them end to end (isolates sorted by id) and draws a secret seed; a ticket's
 *   place is then a keyed pseudo-random permutation of its index ({@link shuffleSlot}): the pre-queue is
 *   a shuffle, fixed once made, that the edge computes without a DO call. Slots `< admitted` are in.
 * - A pre-sale ticket counted only after the freeze (its isolate reported late) queues in the virtual
 *   bucket `openBucket - 1`, after the shuffled ones and before everyone who came after the opening.
 */

/** Width of an arrival bucket (ms). Order inside a bucket is round-robin over isolates. */
const BUCKET_MS = 1_000;
/** The bucket of every ticket issued before the sale opens. */
export const PRE_BUCKET = -1;
/**
 * Arrivals in a bucket are admitted only once the bucket closed this long ago: isolates report their
 * counts within about a second (micro-cache TTL, or the flush timer), so by then the DO has them all.
 */
export const SETTLE_MS = 3_000;

/** Arrival bucket of an epoch-ms time. */
export const bucketOf = (ms: number): number => Math.floor(ms / BUCKET_MS);

/** Last bucket whose arrivals are all counted at `now` (the watermark may enter it). */
export const settledThrough = (now: number): number => bucketOf(now - SETTLE_MS) - 1;

/** A post-opening queue position: bucket, local sequence, isolate id. Also the watermark's form. */
export interface Frontier {
  b: number;
  s: number;
  i: string;
}

/** Where a ticket stands: a slot of the shuffled pre-queue, or a post-opening key. */
export type QueueKey = { kind: "pre"; slot: number } | ({ kind: "post" } & Frontier);

/** Lexicographic order of post keys: bucket, then local sequence, then isolate id. */
export function compareKeys(a: Frontier, b: Frontier): number {
  if (a.b !== b.b) return a.b - b.b;
  if (a.s !== b.s) return a.s - b.s;
  return a.i < b.i ? -1 : a.i > b.i ? 1 : 0;
}

// ───────────────────────────── the pre-queue shuffle ─────────────────────────────

/** Six 32-bit round keys from a hex seed (at least 32 hex digits); distinct per round even for a repetitive seed. */
function roundKeys(seed: string): number[] {
  if (!/^[0-9a-f]{32,}$/.test(seed)) throw new Error("shuffle seed must be ≥ 32 hex digits");
  const words = [0, 1, 2, 3].map((j) => Number.parseInt(seed.slice(j * 8, j * 8 + 8), 16) >>> 0);
  return Array.from({ length: 6 }, (_, r) => mix((words[r % 4] as number) ^ Math.imul(r + 1, 0x9e3779b9), 0x5bd1e995 + r));
}

/** Keyed 32-bit mixing (murmur3 finalizer over x ⊕ key). */
function mix(x: number, key: number): number {
  let h = Math.imul((x ^ key) >>> 0, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The shuffled slot (0‥n-1) of pre-queue index `index` (0‥n-1): a six-round Feistel permutation over the
 * smallest even power of two ≥ n, walked until it lands inside [0, n). A bijection on [0, n) for every
 * seed; unpredictable without the seed, which the DO draws at the opening.
 */
export function shuffleSlot(index: number, n: number, seed: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) throw new RangeError("shuffle domain must be 1‥2^32");
  if (!Number.isInteger(index) || index < 0 || index >= n) throw new RangeError("index outside the shuffle domain");
  let bits = Math.max(2, Math.ceil(Math.log2(n)));
  if (bits % 2) bits++;
  const half = bits / 2;
  const mask = (1 << half) - 1; // half ≤ 16: n ≤ 2^32
  const keys = roundKeys(seed);
  let x = index;
  do {
    let l = Math.floor(x / 2 ** half) & mask;
    let r = x % 2 ** half;
    for (const k of keys) {
      const next = (l ^ (mix(r, k) & mask)) >>> 0;
      l = r;
      r = next;
    }
    x = l * 2 ** half + r;
  } while (x >= n);
  return x;
}

// ───────────────────────────── counting and moving the watermark ─────────────────────────────

/** Tickets issued per isolate in one bucket (cumulative counts the isolates reported). */
export type BucketCounts = ReadonlyMap<string, number>;

/** Tickets of a bucket with a key strictly below `(s, i)` inside that bucket. */
export function countBelow(counts: BucketCounts, s: number, i: string): number {
  let n = 0;
  for (const [id, c] of counts) n += Math.min(c, s) + (c > s && id < i ? 1 : 0);
  return n;
}

/** Total tickets in a bucket. */
export function bucketTotal(counts: BucketCounts): number {
  let n = 0;
  for (const c of counts.values()) n += c;
  return n;
}

/** Result of {@link advanceFrontier}. */
export interface Advance {
  frontier: Frontier;
  /** Tickets that moved below the watermark (≤ the budget). */
  admitted: number;
  /** True when every counted ticket in the settled buckets is admitted (the budget was not the limit). */
  drained: boolean;
}

/**
 * Moves the post-opening watermark forward over at most `budget` tickets, never into a bucket after
 * `maxBucket` (one whose arrivals may still be uncounted). Exact: the tickets admitted are exactly the
 * counted tickets between the old and the new watermark. `buckets` maps bucket → counts per isolate.
 */
export function advanceFrontier(buckets: ReadonlyMap<number, BucketCounts>, from: Frontier, budget: number, maxBucket: number): Advance {
  let f: Frontier = { ...from };
  let left = Math.max(0, Math.floor(budget));
  let admitted = 0;
  const pending = [...buckets.keys()].filter((b) => b >= f.b && b <= maxBucket).sort((a, b) => a - b);
  for (const b of pending) {
    if (b > f.b) f = { b, s: 0, i: "" };
    const counts = buckets.get(b) ?? new Map<string, number>();
    const step = advanceInBucket(counts, f, left);
    admitted += step.admitted;
    left -= step.admitted;
    f = step.frontier;
    if (!step.exhausted) return { frontier: f, admitted, drained: false };
    f = { b: b + 1, s: 0, i: "" };
  }
  // Every counted ticket up to maxBucket is in: the watermark may skip the empty settled buckets.
  if (maxBucket + 1 > f.b) f = { b: maxBucket + 1, s: 0, i: "" };
  return { frontier: f, admitted, drained: true };
}

/** Advances inside one bucket; `exhausted` when every ticket of the bucket is below the new watermark. */
function advanceInBucket(
  counts: BucketCounts,
  from: Frontier,
  budget: number,
): { frontier: Frontier; admitted: number; exhausted: boolean } {
  const ids = [...counts.keys()].sort();
  let s = from.s;
  let left = budget;
  let admitted = 0;
  if (from.i !== "") {
    // Finish the level the watermark stopped in: isolates at or after `from.i` that have a ticket `s`.
    const level = ids.filter((id) => id >= from.i && (counts.get(id) ?? 0) > s);
    if (left < level.length) return { frontier: { b: from.b, s, i: level[left] as string }, admitted: left, exhausted: false };
    left -= level.length;
    admitted += level.length;
    s++;
  }
  for (;;) {
    const active = ids.filter((id) => (counts.get(id) ?? 0) > s);
    if (!active.length) return { frontier: { b: from.b + 1, s: 0, i: "" }, admitted, exhausted: true };
    // Levels s‥minCount-1 all have the same isolates in them: jump over as many whole levels as fit.
    const minCount = Math.min(...active.map((id) => counts.get(id) ?? 0));
    const span = minCount - s;
    const whole = Math.floor(left / active.length);
    if (whole < span) {
      s += whole;
      left -= whole * active.length;
      admitted += whole * active.length;
      const frontier = left === 0 ? { b: from.b, s, i: "" } : { b: from.b, s, i: active[left] as string };
      return { frontier, admitted: admitted + left, exhausted: false };
    }
    s = minCount;
    left -= span * active.length;
    admitted += span * active.length;
  }
}

// ───────────────────────────── placing a ticket ─────────────────────────────

/** The pre-queue as frozen at the opening: per isolate (sorted by id) its offset and count. */
export interface FrozenPreQueue {
  total: number;
  seed: string;
  /** Isolates that issued pre-sale tickets, sorted; `offsets[j]`/`counts[j]` belong to `ids[j]`. */
  ids: string[];
  offsets: number[];
  counts: number[];
}

/**
 * The queue key of a ticket `(k, s, i)` once the room has opened. Pre-sale tickets inside the frozen
 * counts get their shuffled slot; late-counted ones queue in `openBucket - 1` after them.
 */
export function queueKey(ticket: { k: number; s: number; i: string }, pre: FrozenPreQueue, openBucket: number): QueueKey {
  if (ticket.k !== PRE_BUCKET) return { kind: "post", b: ticket.k, s: ticket.s, i: ticket.i };
  const j = findIsolate(pre.ids, ticket.i);
  const frozen = j < 0 ? 0 : (pre.counts[j] as number);
  if (ticket.s < frozen) return { kind: "pre", slot: shuffleSlot((pre.offsets[j] as number) + ticket.s, pre.total, pre.seed) };
  return { kind: "post", b: openBucket - 1, s: ticket.s - frozen, i: `${ticket.i}${LATE_SUFFIX}` };
}

/** Index of `id` in the sorted `ids`, or -1. */
export function findIsolate(ids: readonly string[], id: string): number {
  let lo = 0;
  let hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const e = ids[mid] as string;
    if (e === id) return mid;
    if (e < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

// ───────────────────────────── the published room state ─────────────────────────────

/** Suffix of the pseudo-isolate id under which late-counted pre-sale tickets queue. */
export const LATE_SUFFIX = ":late";

/** Most arrival buckets listed ahead of the watermark in {@link RoomState.queue} (one hour at 1 s). */
export const MAX_QUEUE_BUCKETS = 3_600;

/** What one isolate tells the room: cumulative tickets it issued per arrival bucket. Idempotent. */
export const arrivalReportSchema = z.strictObject({
  isolate: z.string().regex(/^[0-9a-z]{8,32}$/),
  counts: z.array(z.tuple([z.number().int().min(PRE_BUCKET), z.number().int().min(1).max(100_000_000)])).max(10_000),
});
/** See {@link arrivalReportSchema}. */
export type ArrivalReport = z.output<typeof arrivalReportSchema>;

/**
 * The room as the WaitingRoom DO publishes it (about once a second per isolate through the micro-cache).
 * Internal to the platform: it carries the shuffle seed after the opening, so it is never sent to clients.
 */
export interface RoomState {
  eventId: string;
  /** DO clock when this state was built (epoch ms). */
  at: number;
  /** The opening (epoch ms); fixed once opened. */
  openAt: number;
  /** True once the pre-queue is frozen and shuffled (at `openAt + SETTLE_MS`). */
  opened: boolean;
  /** `bucketOf(openAt)`. */
  openBucket: number;
  /** Admissions per minute now (AIMD between floor and ceiling). */
  rate: number;
  /** The organizer's ceiling (admissions per minute): the rate the room returns to while the inventory is healthy. */
  ceiling: number;
  /** The last health classification (`overload`, `steady`, `headroom`) that moved the rate. */
  signal: string;
  /** Every section reported sold with nothing held: admission stopped for good. */
  soldOut: boolean;
  /** Nothing available right now but holds may still expire: admission waits. */
  paused: boolean;
  /** Tickets admitted so far. */
  admitted: number;
  /** The frozen, shuffled pre-queue and how many of its slots are admitted; null before the opening. */
  pre: (FrozenPreQueue & { admitted: number }) | null;
  /** Pre-sale tickets still waiting (before the opening: every pre-sale ticket counted so far). */
  preWaiting: number;
  /** Post-opening watermark: keys strictly below are admitted. */
  frontier: Frontier;
  /** Counted tickets per bucket from `frontier.b` on, for positions: totals, isolates, and the rest. */
  queue: { from: number; admittedInFirst: number; totals: number[]; isolates: number[]; tail: number };
}

/** A ticket's standing, computed at the edge from the ticket and the room state alone. */
export interface Placement {
  admitted: boolean;
  /** Tickets ahead that are not admitted yet (0 once admitted). */
  position: number;
  estimatedWaitSeconds: number;
}

/** Tickets of `state.queue` ahead of post key `key`. Inside a bucket it is an estimate (s × isolates). */
function postAhead(key: Frontier, q: RoomState["queue"]): number {
  if (key.b < q.from) return 0;
  let ahead = 0;
  const idx = key.b - q.from;
  const upto = Math.min(idx, q.totals.length);
  for (let j = 0; j < upto; j++) ahead += q.totals[j] as number;
  // A bucket the room has not counted yet (the ticket's own second, usually): at least the `s` tickets
  // its isolate issued before it are ahead.
  if (idx >= q.totals.length) ahead += q.tail + key.s;
  else ahead += Math.min(q.totals[idx] as number, key.s * Math.max(1, q.isolates[idx] as number));
  return Math.max(0, ahead - q.admittedInFirst);
}

/**
 * Where a ticket `(k, s, i)` stands at `now`. Before the opening nobody is admitted and a pre-sale
 * ticket's position is the size of the pre-queue (its place in it is drawn at the opening). The wait is
 * the position over the current rate, and never less than the time until the ticket's bucket settles.
 */
export function placeTicket(ticket: { k: number; s: number; i: string }, state: RoomState, now: number): Placement {
  const perSecond = Math.max(state.rate, 1) / 60;
  const waitFor = (position: number, notBefore: number) => Math.ceil(Math.max(position / perSecond, Math.max(0, notBefore - now) / 1_000));
  if (!state.opened || !state.pre) {
    const pre = ticket.k === PRE_BUCKET;
    const position = state.preWaiting + (pre ? 0 : postAhead({ b: ticket.k, s: ticket.s, i: ticket.i }, state.queue));
    const settled = pre ? 0 : (ticket.k + 1) * BUCKET_MS + SETTLE_MS;
    return { admitted: false, position, estimatedWaitSeconds: waitFor(position, Math.max(state.openAt + SETTLE_MS, settled)) };
  }
  const key = queueKey(ticket, state.pre, state.openBucket);
  if (key.kind === "pre") {
    if (key.slot < state.pre.admitted) return { admitted: true, position: 0, estimatedWaitSeconds: 0 };
    const position = key.slot - state.pre.admitted;
    return { admitted: false, position, estimatedWaitSeconds: waitFor(position, now) };
  }
  if (compareKeys(key, state.frontier) < 0) return { admitted: true, position: 0, estimatedWaitSeconds: 0 };
  const position = state.pre.total - state.pre.admitted + postAhead(key, state.queue);
  return { admitted: false, position, estimatedWaitSeconds: waitFor(position, (key.b + 1) * BUCKET_MS + SETTLE_MS) };
}

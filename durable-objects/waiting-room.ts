import { DurableObject } from "cloudflare:workers";
import { aggregateAvailability } from "../lib/availability";
import type { EventDoc, EventRouting } from "../lib/event-schema";
import type { AvailabilitySnapshot, InventoryReport } from "../lib/inventory-types";
import { log } from "../lib/log";
import { sendOrganizerEvent } from "../lib/organizer-webhooks";
import {
  type ArrivalReport,
  advanceFrontier,
  arrivalReportSchema,
  type BucketCounts,
  bucketOf,
  bucketTotal,
  compareKeys,
  countBelow,
  type Frontier,
  type FrozenPreQueue,
  findIsolate,
  LATE_SUFFIX,
  MAX_QUEUE_BUCKETS,
  PRE_BUCKET,
  type RoomState,
  SETTLE_MS,
  settledThrough,
} from "../lib/waiting-room-order";
import { type HealthSignal, healthSignal, nextRate, ratePolicy } from "../lib/waiting-room-rate";

/** How often the watermark moves (the alarm period). */
const TICK_MS = 1_000;
/** Longest time one tick may account for: after a long gap (eviction, late alarm) no burst of admissions. */
export const MAX_TICK_GAP_MS = 2_000;
/** The rate is adjusted at most once per this many ms, so a doubled alarm run does not step twice. */
const MIN_ADJUST_INTERVAL_MS = 900;
/** With no sync and nobody waiting for this long, the alarm stops (the next sync restarts it). */
const IDLE_STOP_MS = 5 * 60_000;
/** Buckets this far behind the watermark are forgotten (late counts for them are ignored). */
const KEEP_BEHIND_BUCKETS = 120;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS reports (section_id TEXT NOT NULL, shard INTEGER NOT NULL, report TEXT NOT NULL, at INTEGER NOT NULL,
  PRIMARY KEY (section_id, shard));
CREATE TABLE IF NOT EXISTS arrivals (isolate TEXT NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (isolate, bucket));
CREATE TABLE IF NOT EXISTS room (id INTEGER PRIMARY KEY CHECK (id = 0), state TEXT NOT NULL);
`;

/** What the room keeps about its event (from the latest sync or report). */
interface RoomConfig {
  eventId: string;
  openAt: number;
  admitPerMinute: number;
  sections: EventDoc["sections"];
}

/** Everything but the arrival counts and reports, persisted as one row after every change. */
interface Persisted {
  config: RoomConfig | null;
  /** The frozen pre-queue and its seed; null until the opening. */
  opening: (FrozenPreQueue & { at: number; openBucket: number }) | null;
  preAdmitted: number;
  frontier: Frontier | null;
  rate: number | null;
  /** Fraction of a ticket of budget carried to the next tick while the queue is not drained. */
  carry: number;
  /** Tickets that became admitted without budget (counts that arrived after the watermark passed them). */
  debt: number;
  lastTick: number | null;
  lastAdjustAt: number;
  lastDecreaseAt: number;
  signal: HealthSignal;
  admitted: number;
  /** Tickets counted in all (the funnel's "joined"). */
  joined?: number;
  lastSyncAt: number;
  /** Whether the organizer was last told the event is sold out, and how many times it sold out (delivery ids). */
  soldOut?: boolean;
  soldOutTimes?: number;
}

const initial = (): Persisted => ({
  config: null,
  opening: null,
  preAdmitted: 0,
  frontier: null,
  rate: null,
  carry: 0,
  debt: 0,
  lastTick: null,
  lastAdjustAt: 0,
  lastDecreaseAt: 0,
  signal: { kind: "headroom", reason: "not started" },
  admitted: 0,
  lastSyncAt: 0,
});

/**
 * WaitingRoom: one per event (`idFromName(eventId)`), the event's admission coordinator.
 *
 * Responsibilities:
 * - keeps the arrival counts the edge isolates report (cumulative tickets per isolate and arrival second,
 *   piggybacked on their once-a-second {@link WaitingRoom.sync}; never one call per buyer);
 * - at the opening (`saleStartsAt` + {@link SETTLE_MS}) freezes the pre-queue and draws the secret seed
 *   of its shuffle, durably, once;
 * - every {@link TICK_MS} (alarm; at-least-once, so every step is proportional to the time elapsed and a
 *   doubled run is harmless) moves the admission watermark over exactly `rate × dt` counted tickets:
 *   shuffled pre-sale slots first, then arrivals in order;
 * - adapts the rate (AIMD, lib/waiting-room-rate) to the health the Inventory DOs report, and stops
 *   admitting while nothing is available (for good once sold out);
 * - receives the counts and health each Inventory DO publishes (at most about once a second) and keeps
 *   the latest per section/shard durably; serves the availability snapshot aggregated from them (the edge
 *   reads it through a one-second micro-cache, so this object sees O(isolates) reads per second).
 *
 * Time comes from {@link WaitingRoom.clock}, which tests replace instead of sleeping.
 */
export class WaitingRoom extends DurableObject<Env> {
  /** The room's clock (epoch ms). Tests set it through `runInDurableObject`. */
  clock: () => number = () => Date.now();

  private readonly sql: SqlStorage;
  private readonly reports = new Map<string, InventoryReport>();
  /** Reports received since the last tick: the health signal of the next rate step. */
  private readonly fresh = new Map<string, InventoryReport>();
  /** bucket → isolate → cumulative tickets. */
  private readonly counts = new Map<number, Map<string, number>>();
  /** bucket → total tickets (kept with `counts`). */
  private readonly totals = new Map<number, number>();
  private p: Persisted = initial();
  private alarmPending = false;
  private built: RoomState | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    void ctx.blockConcurrencyWhile(async () => {
      this.sql.exec(SCHEMA);
      for (const row of this.sql.exec<{ report: string }>("SELECT report FROM reports").toArray()) {
        const r = JSON.parse(row.report) as InventoryReport;
        this.reports.set(`${r.sectionId}#${r.shard}`, r);
      }
      for (const row of this.sql.exec<{ isolate: string; bucket: number; count: number }>("SELECT isolate, bucket, count FROM arrivals"))
        this.setCount(row.bucket, row.isolate, row.count);
      const saved = this.sql.exec<{ state: string }>("SELECT state FROM room WHERE id = 0").toArray()[0];
      if (saved) this.p = { ...initial(), ...(JSON.parse(saved.state) as Persisted) };
      this.alarmPending = (await ctx.storage.getAlarm()) !== null;
    });
  }

  // ───────────────────────────── RPC ─────────────────────────────

  /**
   * The edge's once-a-second call (per isolate, through its micro-cache): records the isolate's arrival
   * counts (cumulative, so a retried or repeated report changes nothing) and answers the room state.
   */
  async sync(event: EventRouting, arrivals: ArrivalReport | null): Promise<RoomState> {
    const now = this.clock();
    this.configure(event);
    if (arrivals && this.applyArrivals(arrivalReportSchema.parse(arrivals))) this.persist();
    this.p.lastSyncAt = now;
    await this.ensureAlarm(now);
    return this.state(now);
  }

  /** The room's part of the sales funnel: tickets counted (joined) and admitted so far. */
  funnel(): { joined: number; admitted: number } {
    return { joined: this.p.joined ?? 0, admitted: this.p.admitted };
  }

  /** An Inventory DO's latest counts and health. Older reports than the one kept are ignored. */
  async reportInventory(event: EventRouting, report: InventoryReport): Promise<void> {
    const key = `${report.sectionId}#${report.shard}`;
    const prev = this.reports.get(key);
    if (prev && prev.at > report.at) return;
    this.configure(event);
    this.reports.set(key, report);
    this.fresh.set(key, report);
    this.built = null;
    this.sql.exec(
      "INSERT INTO reports (section_id, shard, report, at) VALUES (?, ?, ?, ?) ON CONFLICT (section_id, shard) DO UPDATE SET report = excluded.report, at = excluded.at",
      report.sectionId,
      report.shard,
      JSON.stringify(report),
      report.at,
    );
    await this.announceSoldOut();
  }

  /**
   * Tells the organizer (`event.sold_out` webhook, through the notifications queue) when every section
   * becomes sold out, and again if seats came back (refunds) and sold out anew. A failed send is tried
   * again at the next report.
   */
  private async announceSoldOut(): Promise<void> {
    const cfg = this.p.config;
    if (!cfg) return;
    const soldOut = this.stock(cfg).soldOut;
    if (soldOut === (this.p.soldOut ?? false)) return;
    this.p.soldOut = soldOut;
    if (soldOut) this.p.soldOutTimes = (this.p.soldOutTimes ?? 0) + 1;
    this.persist();
    if (!soldOut) return;
    try {
      await sendOrganizerEvent(this.env.NOTIFICATIONS_QUEUE, [
        {
          v: 1,
          kind: "organizer.event",
          id: `event.sold_out:${cfg.eventId}:${this.p.soldOutTimes}`,
          type: "event.sold_out",
          eventId: cfg.eventId,
          occurredAt: new Date(this.clock()).toISOString(),
          data: { eventId: cfg.eventId },
        },
      ]);
    } catch (err) {
      this.p.soldOut = false;
      this.p.soldOutTimes = (this.p.soldOutTimes ?? 1) - 1;
      this.persist();
      log.error("sold-out notice not queued; next report retries", { eventId: cfg.eventId, error: String(err) });
    }
  }

  /**
   * The Inventory DOs of this event that reported sales (reconciliation asks only these, plus the owners of
   * orders found in the shards).
   */
  soldLocations(): { sectionId: string; shard: number }[] {
    return [...this.reports.values()].filter((r) => r.sold > 0).map((r) => ({ sectionId: r.sectionId, shard: r.shard }));
  }

  /** Availability per section, from the latest reports (a shard that never reported is fully available). */
  availability(event: Pick<EventDoc, "id" | "sections">): AvailabilitySnapshot {
    return aggregateAvailability(event, this.reports.values());
  }

  /** Moves the watermark (the alarm's work), then schedules the next tick while anyone may be waiting. */
  override async alarm(): Promise<void> {
    this.alarmPending = false;
    const now = this.clock();
    this.tick(now);
    const cfg = this.p.config;
    if (!cfg) return;
    if (!this.p.opening) await this.scheduleIn(Math.min(Math.max(TICK_MS, cfg.openAt + SETTLE_MS - now), 3_600_000));
    else if (this.waiting() > 0 || now - this.p.lastSyncAt < IDLE_STOP_MS) await this.scheduleIn(TICK_MS);
  }

  // ───────────────────────────── the tick ─────────────────────────────

  private tick(now: number): void {
    const cfg = this.p.config;
    if (!cfg) return;
    this.built = null;
    const last = this.p.lastTick;
    const dt = last === null ? 0 : Math.min(Math.max(0, now - last), MAX_TICK_GAP_MS);
    this.p.lastTick = last === null ? now : Math.max(last, now);
    if (!this.p.opening && now >= cfg.openAt + SETTLE_MS) this.open(now, cfg);
    const opening = this.p.opening;
    if (!opening) {
      this.persist();
      return;
    }

    const policy = ratePolicy(cfg.admitPerMinute);
    let rate = Math.min(policy.ceiling, Math.max(policy.floor, this.p.rate ?? policy.initial));
    if (now - this.p.lastAdjustAt >= MIN_ADJUST_INTERVAL_MS) {
      const signal = healthSignal([...this.fresh.values()], policy);
      this.fresh.clear();
      const step = nextRate(rate, signal, policy, now, this.p.lastDecreaseAt);
      if (step.rate < rate) log.info("admission rate down", { eventId: cfg.eventId, from: rate, to: step.rate, why: signal.reason });
      rate = step.rate;
      this.p.lastDecreaseAt = step.lastDecreaseAt;
      this.p.lastAdjustAt = now;
      this.p.signal = signal;
    }
    this.p.rate = rate;

    const { soldOut, paused } = this.stock(cfg);
    if (soldOut || paused || dt === 0) {
      if (soldOut || paused) this.p.carry = 0;
      this.persist();
      return;
    }
    const exact = (rate / 60_000) * dt + this.p.carry;
    let budget = Math.floor(exact);
    const repay = Math.min(this.p.debt, budget);
    this.p.debt -= repay;
    budget -= repay;
    const pre = Math.min(budget, opening.total - this.p.preAdmitted);
    this.p.preAdmitted += pre;
    budget -= pre;
    const adv = advanceFrontier(this.admissionBuckets(opening.openBucket), this.frontier(), budget, settledThrough(now));
    this.p.frontier = adv.frontier;
    this.p.admitted += pre + adv.admitted;
    // Idle credit does not pile up into a burst: the fraction carries only while people are waiting.
    this.p.carry = adv.drained && this.p.preAdmitted === opening.total ? 0 : exact - Math.floor(exact);
    this.prune();
    this.persist();
  }

  /** Freezes the pre-queue (isolates sorted by id, counts end to end) and draws the shuffle's seed. Once. */
  private open(now: number, cfg: RoomConfig): void {
    const pre = this.counts.get(PRE_BUCKET) ?? new Map<string, number>();
    const ids = [...pre.keys()].sort();
    const counts = ids.map((id) => pre.get(id) ?? 0);
    const offsets: number[] = [];
    let offset = 0;
    for (const c of counts) {
      offsets.push(offset);
      offset += c;
    }
    const seed = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
    const openBucket = bucketOf(cfg.openAt);
    this.p.opening = { at: now, openBucket, seed, total: offset, ids, offsets, counts };
    // Post-opening tickets issued under an earlier saleStartsAt (the organizer moved it) still count.
    const firstPost = Math.min(openBucket - 1, ...[...this.counts.keys()].filter((b) => b !== PRE_BUCKET));
    this.p.frontier = { b: firstPost, s: 0, i: "" };
    this.p.lastTick = now;
    this.built = null;
    log.info("waiting room opened", { eventId: cfg.eventId, preQueue: offset, isolates: ids.length });
  }

  /** Counted buckets at or after the watermark, with late pre-sale tickets in `openBucket - 1`. */
  private admissionBuckets(openBucket: number): Map<number, BucketCounts> {
    const f = this.frontier();
    const out = new Map<number, BucketCounts>();
    for (const [b, m] of this.counts) if (b !== PRE_BUCKET && b >= f.b) out.set(b, m);
    const late = this.lateCounts();
    if (late.size && f.b <= openBucket - 1) out.set(openBucket - 1, new Map([...(out.get(openBucket - 1) ?? []), ...late]));
    return out;
  }

  /** Pre-sale tickets counted after the freeze, per pseudo-isolate `${id}:late`. */
  private lateCounts(): Map<string, number> {
    const out = new Map<string, number>();
    const opening = this.p.opening;
    if (!opening) return out;
    for (const [id, c] of this.counts.get(PRE_BUCKET) ?? []) {
      const j = findIsolate(opening.ids, id);
      const late = c - (j < 0 ? 0 : (opening.counts[j] as number));
      if (late > 0) out.set(`${id}${LATE_SUFFIX}`, late);
    }
    return out;
  }

  private frontier(): Frontier {
    return this.p.frontier ?? { b: bucketOf(this.p.config?.openAt ?? 0) - 1, s: 0, i: "" };
  }

  /** Sold out: every section reported, none available, none held. Paused: none available, some held. */
  private stock(cfg: RoomConfig): { soldOut: boolean; paused: boolean } {
    if (!this.reports.size) return { soldOut: false, paused: false };
    const snap = aggregateAvailability({ id: cfg.eventId, sections: cfg.sections }, this.reports.values());
    const available = snap.sections.reduce((n, s) => n + s.available, 0);
    const held = snap.sections.reduce((n, s) => n + s.held, 0);
    return { soldOut: available === 0 && held === 0, paused: available === 0 && held > 0 };
  }

  /** Tickets counted and not yet admitted. */
  private waiting(): number {
    const opening = this.p.opening;
    if (!opening) return bucketTotal(this.counts.get(PRE_BUCKET) ?? new Map());
    let n = opening.total - this.p.preAdmitted;
    const f = this.frontier();
    for (const [b, m] of this.admissionBuckets(opening.openBucket))
      n += b === f.b ? bucketTotal(m) - countBelow(m, f.s, f.i) : bucketTotal(m);
    return n;
  }

  // ───────────────────────────── arrivals ─────────────────────────────

  /** Records an isolate's counts; true when anything changed. */
  private applyArrivals(report: ArrivalReport): boolean {
    const opening = this.p.opening;
    const f = this.frontier();
    const floor = f.b - KEEP_BEHIND_BUCKETS;
    let changed = false;
    for (const [bucket, count] of report.counts) {
      if (bucket !== PRE_BUCKET && bucket < floor) continue;
      const old = this.counts.get(bucket)?.get(report.isolate) ?? 0;
      if (count <= old) continue;
      this.setCount(bucket, report.isolate, count);
      this.p.joined = (this.p.joined ?? 0) + (count - old);
      this.sql.exec(
        "INSERT INTO arrivals (isolate, bucket, count) VALUES (?, ?, ?) ON CONFLICT (isolate, bucket) DO UPDATE SET count = excluded.count",
        report.isolate,
        bucket,
        count,
      );
      if (opening) this.p.debt += this.newlyBelow(bucket, report.isolate, old, count, opening);
      changed = true;
    }
    if (changed) this.built = null;
    return changed;
  }

  /** Of the tickets `old‥count-1` just counted, how many are already below the watermark (admitted unbudgeted). */
  private newlyBelow(bucket: number, isolate: string, old: number, count: number, opening: NonNullable<Persisted["opening"]>): number {
    let b = bucket;
    let id = isolate;
    let from = old;
    let to = count;
    if (bucket === PRE_BUCKET) {
      const j = findIsolate(opening.ids, isolate);
      const frozen = j < 0 ? 0 : (opening.counts[j] as number);
      b = opening.openBucket - 1;
      id = `${isolate}${LATE_SUFFIX}`;
      from = Math.max(0, old - frozen);
      to = count - frozen;
      if (to <= from) return 0;
    }
    const f = this.frontier();
    if (b < f.b) return to - from;
    if (b > f.b) return 0;
    return Math.max(0, Math.min(to, f.s) - from) + (from <= f.s && f.s < to && compareKeys({ b, s: f.s, i: id }, f) < 0 ? 1 : 0);
  }

  private setCount(bucket: number, isolate: string, count: number): void {
    let m = this.counts.get(bucket);
    if (!m) {
      m = new Map();
      this.counts.set(bucket, m);
    }
    this.totals.set(bucket, (this.totals.get(bucket) ?? 0) - (m.get(isolate) ?? 0) + count);
    m.set(isolate, count);
  }

  /** Forgets buckets well behind the watermark (memory and rows). */
  private prune(): void {
    const floor = this.frontier().b - KEEP_BEHIND_BUCKETS;
    let dropped = false;
    for (const b of this.counts.keys())
      if (b !== PRE_BUCKET && b < floor) {
        this.counts.delete(b);
        this.totals.delete(b);
        dropped = true;
      }
    if (dropped) this.sql.exec("DELETE FROM arrivals WHERE bucket <> ? AND bucket < ?", PRE_BUCKET, floor);
  }

  // ───────────────────────────── state ─────────────────────────────

  private configure(event: EventRouting): void {
    const openAt = Date.parse(event.saleStartsAt);
    const cur = this.p.config;
    const next: RoomConfig = {
      eventId: event.id,
      // The opening is fixed once the pre-queue is frozen.
      openAt: this.p.opening && cur ? cur.openAt : openAt,
      admitPerMinute: event.waitingRoom.admitPerMinute,
      sections: event.sections,
    };
    if (cur && cur.openAt === next.openAt && cur.admitPerMinute === next.admitPerMinute && cur.sections.length === next.sections.length)
      return;
    this.p.config = next;
    this.built = null;
    this.persist();
  }

  /** The published state, rebuilt only after a change (ticks, arrivals, reports); `at` is refreshed. */
  private state(now: number): RoomState {
    if (this.built) return { ...this.built, at: now };
    const cfg = this.p.config;
    const policy = ratePolicy(cfg?.admitPerMinute ?? 1);
    const opening = this.p.opening;
    const f = this.frontier();
    const buckets = opening ? this.admissionBuckets(opening.openBucket) : this.postBuckets(f.b);
    // Dense arrays from the watermark's bucket to the last counted one (at most MAX_QUEUE_BUCKETS; the rest
    // is summed into `tail`), built from the counted buckets only, so a far-off bucket costs nothing.
    const keys = [...buckets.keys()].filter((b) => b >= f.b).sort((a, b) => a - b);
    const span = keys.length ? Math.min((keys[keys.length - 1] as number) - f.b + 1, MAX_QUEUE_BUCKETS) : 0;
    const totals = new Array<number>(span).fill(0);
    const isolates = new Array<number>(span).fill(0);
    let tail = 0;
    for (const b of keys) {
      const m = buckets.get(b) as BucketCounts;
      if (b - f.b < span) {
        totals[b - f.b] = bucketTotal(m);
        isolates[b - f.b] = m.size;
      } else tail += bucketTotal(m);
    }
    const first = buckets.get(f.b);
    const { soldOut, paused } = cfg ? this.stock(cfg) : { soldOut: false, paused: false };
    this.built = {
      eventId: cfg?.eventId ?? "",
      at: now,
      openAt: cfg?.openAt ?? 0,
      opened: opening !== null,
      openBucket: bucketOf(cfg?.openAt ?? 0),
      rate: this.p.rate ?? policy.initial,
      ceiling: policy.ceiling,
      signal: this.p.signal.kind,
      soldOut,
      paused,
      admitted: this.p.admitted,
      pre: opening
        ? {
            total: opening.total,
            seed: opening.seed,
            ids: opening.ids,
            offsets: opening.offsets,
            counts: opening.counts,
            admitted: this.p.preAdmitted,
          }
        : null,
      preWaiting: opening ? opening.total - this.p.preAdmitted : bucketTotal(this.counts.get(PRE_BUCKET) ?? new Map()),
      frontier: f,
      queue: { from: f.b, admittedInFirst: first ? countBelow(first, f.s, f.i) : 0, totals, isolates, tail },
    };
    return this.built;
  }

  /** Before the opening: post-opening buckets counted so far (tickets issued between open and freeze). */
  private postBuckets(from: number): Map<number, BucketCounts> {
    const out = new Map<number, BucketCounts>();
    for (const [b, m] of this.counts) if (b !== PRE_BUCKET && b >= from) out.set(b, m);
    return out;
  }

  private persist(): void {
    this.sql.exec(
      "INSERT INTO room (id, state) VALUES (0, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
      JSON.stringify(this.p),
    );
  }

  private async ensureAlarm(now: number): Promise<void> {
    if (this.alarmPending) return;
    const cfg = this.p.config;
    const untilOpen = cfg && !this.p.opening ? cfg.openAt + SETTLE_MS - now : 0;
    await this.scheduleIn(Math.min(Math.max(TICK_MS, untilOpen), 3_600_000));
  }

  /** Alarms run on the real clock; `clock` only decides what a tick does. */
  private async scheduleIn(ms: number): Promise<void> {
    this.alarmPending = true;
    await this.ctx.storage.setAlarm(Date.now() + ms);
  }
}

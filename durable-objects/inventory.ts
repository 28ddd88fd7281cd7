import { DurableObject } from "cloudflare:workers";
import { type AnalyticsEvent, sendAnalytics } from "../lib/analytics-event";
import { chunkByWeight, groupBy } from "../lib/chunk";
import { config } from "../lib/config";
import type { EventRouting } from "../lib/event-schema";
import { faultWindow } from "../lib/faults";
import { Gather, GroupCommit } from "../lib/group-commit";
import { inventoryName, orderIdForHold } from "../lib/hold-id";
import { limitName, limitStub, limitStubNamed, type Reservation, type ReserveAnswer } from "../lib/holds";
import {
  type HoldRequest,
  type HoldStatus,
  type HoldView,
  type InventoryConfig,
  type InventoryCounts,
  type InventoryHealth,
  type InventoryReport,
  NEEDS_SETUP,
  type PlaceAnswer,
} from "../lib/inventory-types";
import { log } from "../lib/log";
import { metric } from "../lib/metric-catalog";
import { type OrderMessage, orderBodyOf, type RefundRecord, type StoredOrder, type TicketStatus } from "../lib/order";
import { paymentProvider } from "../lib/payment-methods";
import { fail, type Outcome, ok } from "../lib/problem";
import {
  CHECK_IN_SCHEMA,
  type CheckInResult,
  type CheckInRow,
  checkIn,
  checkInList,
  nextAnnouncementAt,
  ownTicket,
  sendAnnouncements,
  type TicketView,
  ticketStatuses,
} from "../lib/ticket-status";
import * as capacityMoves from "./inventory-capacity";
import * as refunds from "./inventory-refunds";
import type { LedgerSettlement } from "./limit-ledger";

/** What an Inventory DO publishes to: the event's WaitingRoom DO. */
interface InventoryReportSink {
  reportInventory(event: EventRouting, report: InventoryReport): Promise<void>;
}

interface HoldRow extends Record<string, SqlStorageValue> {
  id: string;
  user_id: string;
  quantity: number;
  seats: string;
  total: number;
  status: HoldStatus;
  created_at: number;
  expires_at: number;
  order_id: string | null;
  checkout_attempt: number;
}

/** The payment idempotency key of a checkout attempt: a retried attempt never reuses a voided key. */
const paymentKey = (holdId: string, attempt: number): string => `${orderIdForHold(holdId)}:${attempt}`;

/** Queueing delay above which a request counts as an overload signal (ms). */
const OVERLOAD_DELAY_MS = 250;
/** Snapshots are published at most this often (ms). */
const PUBLISH_INTERVAL_MS = 1_000;
/** A checkout with no outcome after this long is presumed dead: its charge is voided and the hold reopened (ms). */
export const CHECKOUT_TIMEOUT_MS = 120_000;
/** Outbox: an order the edge did not hand to the queue is sent by the alarm this long after it was recorded (ms). */
const OUTBOX_RESEND_MS = 5_000;
/**
 * Outbox: a sent order whose shard has not confirmed it is sent again after this long, doubling per
 * attempt up to {@link OUTBOX_RESEND_MAX_MS} (a queue keeps messages in memory locally, and any hop can
 * lose one; the consumer is idempotent, so a second copy changes nothing).
 */
const OUTBOX_CONFIRM_MS = 30_000;
const OUTBOX_RESEND_MAX_MS = 600_000;
/** After a failed payment the hold lives at least this much longer, so the buyer can retry (ms). */
export const CHECKOUT_ABORT_GRACE_MS = 60_000;
/** A ledger settlement that failed is retried this long after (ms). */
const LEDGER_RETRY_MS = 1_000;
/** A checkout's `checking_out` note is settled by the alarm this long after (ms), unless the sale settled it first. */
const LEDGER_DEFER_MS = 1_000;
/**
 * A hold entering checkout with less than this left (ms) has its ledger settled before the answer: the
 * deferred note must land (alarm retries each LEDGER_RETRY_MS) long before the reservation would lapse.
 */
const LEDGER_DEFER_MIN_LEFT_MS = 60_000;
/** Ledger notes settled per alarm run (one call per ledger among them); more wait for the next run. */
const LEDGER_SETTLE_BATCH = 500;

/** A hold whose buyer's LimitLedger must learn its state (`ledger_sync`). */
type LedgerNote = {
  hold_id: string;
  version: number;
};
/**
 * The notes to settle with their holds' rows and voided tickets, read in one query (`id` is null when the
 * hold is gone).
 */
const LEDGER_NOTES_SQL = `SELECT ledger_sync.hold_id AS note_hold_id, ledger_sync.version AS note_version, holds.*,
  ${refunds.voidedCountOf("holds.order_id")} AS voided FROM ledger_sync LEFT JOIN holds ON holds.id = ledger_sync.hold_id`;

/** Tickets per `sendBatch` of the orders hand-off (a ticket is about 250 bytes of a message; a batch may carry 256 KB). */
const HAND_OFF_TICKETS = 500;

/** Splits order messages into `sendBatch` calls: at most 100 messages and {@link HAND_OFF_TICKETS} tickets each. */
const handOffParts = (messages: OrderMessage[]): OrderMessage[][] =>
  chunkByWeight(messages, 100, HAND_OFF_TICKETS, (m) => m.tickets.length);

/** The delay before the `attempts`-th re-send of an unconfirmed order (1-based). */
const outboxResendDelay = (attempts: number): number => Math.min(OUTBOX_CONFIRM_MS * 2 ** Math.max(0, attempts - 1), OUTBOX_RESEND_MAX_MS);

/** Checkout timings (CHECKOUT_TIMEOUT_SECONDS / CHECKOUT_GRACE_SECONDS; tests and local runs shorten them). */
function checkoutTimings(env: object): { timeoutMs: number; graceMs: number } {
  const c = config(env);
  return { timeoutMs: c.CHECKOUT_TIMEOUT_SECONDS * 1000, graceMs: c.CHECKOUT_GRACE_SECONDS * 1000 };
}
/** Most seats one hold may name. */
const MAX_SEATS_PER_HOLD = 50;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (id INTEGER PRIMARY KEY CHECK (id = 0), capacity INTEGER NOT NULL, held INTEGER NOT NULL, sold INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seats (
  id TEXT PRIMARY KEY, row_id TEXT NOT NULL, number INTEGER NOT NULL, ord INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'available' CHECK (status IN ('available','held','sold')), hold_id TEXT);
CREATE INDEX IF NOT EXISTS seats_status_ord ON seats(status, ord);
CREATE TABLE IF NOT EXISTS holds (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, quantity INTEGER NOT NULL, seats TEXT NOT NULL, total INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active','checking_out','expired','released','sold')),
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, order_id TEXT, checkout_at INTEGER, payment_method TEXT,
  checkout_attempt INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS holds_status_expiry ON holds(status, expires_at);
CREATE TABLE IF NOT EXISTS orders (
  id TEXT PRIMARY KEY, hold_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL, body TEXT NOT NULL, message TEXT NOT NULL,
  created_at INTEGER NOT NULL, enqueued_at INTEGER);
-- orders_unsent indexed enqueued_at IS NULL for the one-time outbox migration only, and cost every order an
-- index insert and delete; that migration now scans.
DROP INDEX IF EXISTS orders_unsent;
CREATE TABLE IF NOT EXISTS order_outbox (order_id TEXT PRIMARY KEY, due_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS order_outbox_due ON order_outbox(due_at);
CREATE TABLE IF NOT EXISTS ledger_sync (hold_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (
  idempotency_key TEXT PRIMARY KEY, hold_id TEXT NOT NULL, provider TEXT NOT NULL, reason TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending','refunded','nothing_to_refund')), charge_id TEXT,
  attempts INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS provider_events (id TEXT PRIMARY KEY, signature TEXT NOT NULL, outcome TEXT NOT NULL, received_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ticket_marks (
  ticket_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('void','used')),
  at INTEGER NOT NULL, by TEXT);
CREATE INDEX IF NOT EXISTS ticket_marks_order ON ticket_marks(order_id);
`;

/**
 * Inventory: the seats of one seated section, or one capacity shard of a general-admission section.
 *
 * Responsibilities:
 * - holds in one SQLite transaction (named seats, best-available seats, or a GA quantity), never more
 *   than the capacity: available + held + sold = capacity after every call;
 * - expiry: an alarm at the earliest expiry releases due holds (at-least-once alarms are harmless: an
 *   expired hold is never expired twice), and every call also expires what is due before it acts;
 * - release by the owner; the `checking_out` lock (a hold in checkout never expires) and its outcome
 *   (sold with the order recorded durably, or back to active);
 * - publishing its counts and health to the event's WaitingRoom DO at most once a second.
 *
 * All writes of one call happen synchronously (no await between them), so each call is atomic.
 */
export class Inventory extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private config: InventoryConfig | null = null;
  private event: EventRouting | null = null;
  /** The version of the event routing kept (meta 'event_version'; 0: unknown, every `place` asks for it). */
  private eventVersion = 0;
  /**
   * No active hold expires before this (epoch ms): calls skip the expiry query until then. Lowered by
   * every write that makes a hold active or moves an expiry ({@link noteExpiry}); recomputed after expiring.
   */
  private nextExpiryAt = 0;
  private counts: InventoryCounts = { capacity: 0, available: 0, held: 0, sold: 0 };
  /** Alarm time we last set (null: none). */
  private alarmAt: number | null = null;
  /** A change not yet published (kept durably too, as meta 'unpublished', so a restart publishes it). */
  private dirty = false;
  private lastPublishAt = 0;
  /** Version of the last ledger settlement noted (meta 'ledger_version'): the ledger applies only newer ones. */
  private ledgerVersion = 0;
  /** The event was cancelled (table `cancellation`): no more holds or checkouts. */
  private cancelled = false;
  private readonly timings: { timeoutMs: number; graceMs: number };
  /** Holds arriving together commit together. */
  private readonly group = new GroupCommit((n) => metric.groupCommitSize.observe({ object: "inventory" }, n));
  // Health window (since the last publish).
  private delays: number[] = [];
  private holdsInWindow = 0;
  private overloadsInWindow = 0;
  private windowStart = Date.now();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.timings = checkoutTimings(env);
    void ctx.blockConcurrencyWhile(async () => {
      // An object nobody has initialized (a crafted id, a read of a section never sold) writes nothing:
      // its tables are created by the first write call (ensure).
      if (!this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").toArray().length) return;
      this.sql.exec(SCHEMA);
      this.sql.exec(refunds.REFUNDS_SCHEMA);
      this.sql.exec(CHECK_IN_SCHEMA);
      this.sql.exec(capacityMoves.CAPACITY_SCHEMA);
      this.cancelled = refunds.isCancelled(this.sql);
      this.migrateOutbox();
      const meta = new Map(
        this.sql
          .exec<{ k: string; v: string }>("SELECT k, v FROM meta")
          .toArray()
          .map((r) => [r.k, r.v]),
      );
      const cfg = meta.get("config");
      if (cfg) this.config = JSON.parse(cfg) as InventoryConfig;
      const ev = meta.get("event");
      if (ev) this.event = JSON.parse(ev) as EventRouting;
      this.ledgerVersion = Number(meta.get("ledger_version") ?? 0);
      this.eventVersion = Number(meta.get("event_version") ?? 0);
      this.loadCounts();
      this.alarmAt = await ctx.storage.getAlarm();
      // A change made before a restart and never published: publish it now, not at the next change.
      if (meta.has("unpublished")) {
        this.dirty = true;
        this.scheduleAlarm(Date.now());
      }
    });
  }

  /** Orders recorded before the outbox table existed and never handed to the queue go into it (once). */
  private migrateOutbox(): void {
    if (this.sql.exec("SELECT 1 FROM meta WHERE k = 'outbox_v2'").toArray().length) return;
    this.ctx.storage.transactionSync(() => {
      this.sql.exec(
        "INSERT OR IGNORE INTO order_outbox (order_id, due_at, attempts) SELECT id, created_at + ?, 0 FROM orders WHERE enqueued_at IS NULL",
        OUTBOX_RESEND_MS,
      );
      this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('outbox_v2', '1')");
    });
  }

  // ───────────────────────────── RPC: holds ─────────────────────────────

  /** Initializes the DO for its section (idempotent; every other write call does this too). */
  init(config: InventoryConfig, event: EventRouting): InventoryCounts {
    this.ensure(config, event);
    return { ...this.counts };
  }

  /**
   * Holds seats or a quantity for `req.userId` with the configuration this object keeps: the hot path, no
   * configuration shipped per call. Answers {@link NEEDS_SETUP} (nothing done) when the object is not
   * initialized or keeps an older event version than `req.eventVersion`; the edge then calls {@link hold}.
   * Holds that arrive together share one storage commit (lib/group-commit.ts).
   */
  async place(req: HoldRequest): Promise<PlaceAnswer> {
    if (!this.config || req.eventVersion === undefined || req.eventVersion > this.eventVersion) return NEEDS_SETUP;
    // A rehearsed stall (fault inventory_slow) holds each hold back by itself, as a slow object would.
    const stalled = this.stallIfFaulted();
    if (stalled) await stalled;
    return this.placeNow(req);
  }

  /** Holds seats or a quantity for `req.userId`. Atomic; fails with seats_unavailable / sold_out / validation_failed. */
  hold(config: InventoryConfig, event: EventRouting, req: HoldRequest): Promise<Outcome<HoldView>> {
    this.ensure(config, event, req.eventVersion);
    void this.stallIfFaulted();
    return this.placeNow(req);
  }

  /** A hold with its reservation (`req.limit`: gathered, {@link reserveAndHold}), or without (group commit). */
  private placeNow(req: HoldRequest): Promise<Outcome<HoldView>> {
    return req.limit === undefined ? this.group.run(() => this.holdOne(req)) : this.reserving.add(req);
  }

  /** Holds that need a reservation first, gathered per macrotask. */
  private readonly reserving = new Gather<HoldRequest, Outcome<HoldView>>((reqs) => this.reserveAndHold(reqs));

  /**
   * The per-customer limit, then the holds, for the requests gathered in one macrotask: a request that
   * cannot be held as things stand is answered at once, with no reservation. The others are reserved in
   * their buyers' LimitLedgers, one call per ledger for all of them (so a hold costs its edge one Durable
   * Object call, not two); then the granted ones are held one by one in one turn, so their writes share one
   * commit. State may have moved during the reservation calls: each hold is decided again, and a granted
   * reservation whose hold failed is released.
   */
  private async reserveAndHold(reqs: HoldRequest[]): Promise<Outcome<HoldView>[]> {
    const now = Date.now();
    this.expireDue(now, false);
    const answers: (Outcome<HoldView> | undefined)[] = reqs.map((req) => (this.mayHold(req) ? undefined : this.holdOne(req)));
    const event = this.event;
    if (!event) throw new Error("inventory without its event routing");
    const pending = reqs.flatMap((_, i) => (answers[i] === undefined ? [i] : []));
    const byLedger = groupBy(pending, (i) => limitName(event, (reqs[i] as HoldRequest).userId));
    const expiresAt = now + this.cfg().holdSeconds * 1000;
    const ask = (req: HoldRequest): Reservation => ({
      userId: req.userId,
      holdId: req.holdId,
      quantity: req.seats?.length ?? req.quantity ?? 1,
      limit: req.limit ?? 0,
      expiresAt,
    });
    const granted = await Promise.all(
      [...byLedger].map(async ([name, indexes]): Promise<[number, ReserveAnswer][]> => {
        try {
          const answered = await limitStubNamed(this.env.LIMIT_LEDGER, name).reserveMany(indexes.map((i) => ask(reqs[i] as HoldRequest)));
          return indexes.map((i, k) => [i, answered[k] as ReserveAnswer]);
        } catch (err) {
          log.warn("limit ledger unreachable; holds refused", { ledger: name, holds: indexes.length, error: String(err) });
          return indexes.map((i) => [i, fail("overloaded", "The per-customer limit could not be checked; retry shortly.")]);
        }
      }),
    );
    // One synchronous pass: the holds' writes share one commit.
    const failed: HoldRequest[] = [];
    let held = 0;
    for (const [i, reserved] of granted.flat()) {
      const req = reqs[i] as HoldRequest;
      if (!reserved.ok) {
        answers[i] = reserved;
        continue;
      }
      const outcome = this.holdOne(req);
      if (outcome.ok) held++;
      else failed.push(req);
      answers[i] = outcome;
    }
    if (held) metric.groupCommitSize.observe({ object: "inventory" }, held);
    if (failed.length) void this.releaseReservations(event, failed);
    return answers as Outcome<HoldView>[];
  }

  /** Whether `req` could be held as things stand (else it is refused before any reservation). */
  private mayHold(req: HoldRequest): boolean {
    if (this.cancelled) return false;
    if (this.cfg().kind === "ga" && req.seats?.length) return false;
    return this.counts.available >= (req.seats?.length ?? req.quantity ?? 1);
  }

  /** Releases the reservations of holds that failed after their reservation was granted (best effort: they lapse anyway). */
  private async releaseReservations(event: EventRouting, reqs: HoldRequest[]): Promise<void> {
    await Promise.all(
      reqs.map(async (req) => {
        try {
          await limitStub(this.env.LIMIT_LEDGER, event, req.userId).setState(req.holdId, "released");
        } catch (err) {
          log.warn("reservation of a failed hold not released; it lapses with the hold's lifetime", {
            holdId: req.holdId,
            error: String(err),
          });
        }
      }),
    );
  }

  /** {@link holdNow}, an unexpected failure answered as 500 (not thrown to the group). */
  private holdOne(req: HoldRequest): Outcome<HoldView> {
    try {
      return this.holdNow(req);
    } catch (err) {
      log.error("hold failed", { inventory: inventoryName(this.cfg()), holdId: req.holdId, error: String(err) });
      return fail("internal_error", "The hold could not be recorded.");
    }
  }

  /** {@link hold} on an initialized object. */
  private holdNow(req: HoldRequest): Outcome<HoldView> {
    const now = Date.now();
    this.observe(now, req.sentAt);
    this.holdsInWindow++;
    this.expireDue(now, false);
    const cfg = this.cfg();
    if (this.cancelled) return fail("event_cancelled", "This event is cancelled.");

    const expiresAt = now + cfg.holdSeconds * 1000;
    let seats: string[] = [];
    let quantity: number;
    if (cfg.kind === "seated") {
      const picked = this.pickSeats(req);
      if (!picked.ok) return picked;
      seats = picked.value;
      quantity = seats.length;
    } else {
      if (req.seats?.length) return fail("validation_failed", "General admission sections sell quantities, not named seats.");
      quantity = req.quantity ?? 1;
      if (this.counts.available === 0) return fail("sold_out", "This section is sold out.");
      if (this.counts.available < quantity) return fail("seats_unavailable", `Only ${this.counts.available} left here.`);
    }

    const total = quantity * cfg.price;
    const inserted = this.insertHold(req, seats, quantity, total, now, expiresAt);
    if (!inserted) return fail("validation_failed", "That hold id is already in use.");
    this.counts.held += quantity;
    this.counts.available -= quantity;
    this.noteExpiry(expiresAt);
    this.markDirty(now);
    this.scheduleAlarm(expiresAt);
    // The row as inserted (no read back).
    return ok(
      this.view({
        id: req.holdId,
        user_id: req.userId,
        quantity,
        seats: JSON.stringify(seats),
        total,
        status: "active",
        created_at: now,
        expires_at: expiresAt,
        order_id: null,
        checkout_attempt: 0,
      }),
    );
  }

  /**
   * Marks the seats held and inserts the hold row, in one transaction. False (and nothing written) when the
   * hold id is taken: the primary key refuses it, so no lookup precedes the insert.
   */
  private insertHold(req: HoldRequest, seats: string[], quantity: number, total: number, now: number, expiresAt: number): boolean {
    try {
      this.ctx.storage.transactionSync(() => {
        for (const id of seats)
          this.sql.exec("UPDATE seats SET status = 'held', hold_id = ? WHERE id = ? AND status = 'available'", req.holdId, id);
        this.sql.exec(
          "INSERT INTO holds (id, user_id, quantity, seats, total, status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
          req.holdId,
          req.userId,
          quantity,
          JSON.stringify(seats),
          total,
          now,
          expiresAt,
        );
        this.sql.exec("UPDATE counters SET held = held + ? WHERE id = 0", quantity);
      });
      return true;
    } catch (err) {
      if (/UNIQUE constraint failed: holds\.id/.test(String(err))) return false;
      throw err;
    }
  }

  /**
   * The hold if `userId` owns it (another user's hold is "not found"). Expires it first when due. A hold
   * that ended (expired or released) is answered only once the buyer's LimitLedger knows it: a buyer who
   * sees the hold gone can hold again at once, though the alarm that expired it is still settling.
   */
  async getHold(holdId: string, userId: string): Promise<Outcome<HoldView>> {
    if (!this.config) return fail("not_found", "No such hold.");
    this.expireDue(Date.now());
    const row = this.holdRow(holdId);
    if (!row || row.user_id !== userId) return fail("not_found", "No such hold.");
    if (row.status === "expired" || row.status === "released") await this.settleLedger(holdId);
    return ok(this.view(row));
  }

  /**
   * Releases an active hold of `userId`; releasing an already released or expired hold is a no-op. The
   * buyer's LimitLedger is settled before the answer (so a new hold right after counts correctly).
   */
  async release(holdId: string, userId: string): Promise<Outcome<HoldView>> {
    if (!this.config) return fail("not_found", "No such hold.");
    const now = Date.now();
    this.expireDue(now);
    const row = this.holdRow(holdId);
    if (!row || row.user_id !== userId) return fail("not_found", "No such hold.");
    if (row.status === "checking_out") return fail("hold_not_active", "The hold is in checkout.");
    if (row.status === "sold") return fail("hold_not_active", "The hold has been sold.");
    if (row.status === "active") {
      this.ctx.storage.transactionSync(() => this.releaseRow(row, "released"));
      this.markDirty(now);
    }
    await this.settleLedger(holdId);
    return ok(this.view(this.holdRow(holdId) as HoldRow));
  }

  // ───────────────────────────── RPC: checkout ─────────────────────────────

  /**
   * Locks an active hold for checkout: from now on it cannot expire until {@link completeCheckout} or
   * {@link abortCheckout}. A hold already in checkout answers `idempotency_conflict`; an expired one
   * `hold_expired`; a sold one returns its view with `status: "sold"` (the caller replays the order).
   * `paymentKey` is the idempotency key for this attempt's charge.
   */
  async beginCheckout(holdId: string, userId: string, paymentMethod: string): Promise<Outcome<{ hold: HoldView; paymentKey: string }>> {
    void this.stallIfFaulted();
    // Group commit: the checkouts begun in this macrotask share one storage commit.
    const begun = await this.group.run(() => this.lockForCheckout(holdId, userId, paymentMethod));
    // A hold answered in checkout was locked just now (one already in checkout answers a conflict). The
    // ledger must count the places as long as the hold is in checkout (which never expires). Near its
    // expiry the ledger is told before any charge.
    if (begun.ok && begun.value.hold.status === "checking_out")
      await this.settleLedgerSoon(holdId, Date.parse(begun.value.hold.expiresAt), Date.now());
    return begun;
  }

  /** {@link beginCheckout}'s decision and write. */
  private lockForCheckout(holdId: string, userId: string, paymentMethod: string): Outcome<{ hold: HoldView; paymentKey: string }> {
    if (!this.config) return fail("not_found", "No such hold.");
    const now = Date.now();
    let row = this.holdRow(holdId);
    if (!row || row.user_id !== userId) return fail("not_found", "No such hold.");
    // This hold's own time, read from its row (other due holds are the alarm's and the next hold's work).
    if (row.status === "active" && row.expires_at <= now) {
      this.expireRows([row], now);
      row = { ...row, status: "expired" };
    }
    if (this.cancelled && row.status !== "sold") return fail("event_cancelled", "This event is cancelled.");
    switch (row.status) {
      case "expired":
        return fail("hold_expired", "The hold expired before checkout.");
      case "released":
        return fail("hold_expired", "The hold was released.");
      case "checking_out":
        return fail("idempotency_conflict", "A checkout for this hold is already in progress.");
      case "sold":
        return ok({ hold: this.view(row), paymentKey: paymentKey(holdId, row.checkout_attempt) });
      case "active": {
        const attempt = row.checkout_attempt + 1;
        this.ctx.storage.transactionSync(() => {
          this.sql.exec(
            "UPDATE holds SET status = 'checking_out', checkout_at = ?, payment_method = ?, checkout_attempt = ? WHERE id = ?",
            now,
            paymentMethod,
            attempt,
            holdId,
          );
          this.noteLedger(holdId);
        });
        this.scheduleAlarm(now + this.timings.timeoutMs);
        const hold = this.view({ ...row, status: "checking_out", checkout_attempt: attempt });
        return ok({ hold, paymentKey: paymentKey(holdId, attempt) });
      }
    }
  }

  /**
   * Marks a hold in checkout sold and records its order (the paid-order `message`; its document is derived,
   * {@link orderBodyOf}) durably, in one transaction. Answers null when it recorded the order now (the
   * caller has it: it is not sent back). Idempotent: a second call for the same
   * hold answers the order already stored.
   */
  completeCheckout(holdId: string, message: OrderMessage, forPaymentKey?: string, handOff = false): Promise<Outcome<StoredOrder | null>> {
    void this.stallIfFaulted();
    // Group commit: the orders recorded in this macrotask share one storage commit.
    return this.group.run(() => this.recordOrder(holdId, message, forPaymentKey, handOff));
  }

  /** {@link completeCheckout}'s decision and transaction. */
  private recordOrder(
    holdId: string,
    message: OrderMessage,
    forPaymentKey: string | undefined,
    handOff: boolean,
  ): Outcome<StoredOrder | null> {
    if (!this.config) return fail("not_found", "No such hold.");
    const row = this.holdRow(holdId);
    if (!row) return fail("not_found", "No such hold.");
    // A payment settled later (card webhook) completes only the attempt it paid for, and never one whose
    // charge is already being voided.
    if (forPaymentKey !== undefined && row.status !== "sold" && this.checkoutState(row, forPaymentKey) !== "awaiting")
      return fail("hold_not_active", "No checkout is waiting for this payment.");
    if (forPaymentKey !== undefined && row.status === "sold" && forPaymentKey !== paymentKey(holdId, row.checkout_attempt))
      return fail("hold_not_active", "The hold was sold through another payment.");
    if (row.status === "sold") {
      const existing = this.orderRow(row.order_id ?? "");
      return existing ? ok(existing) : fail("internal_error", "Sold hold without an order.");
    }
    if (row.status !== "checking_out") return fail("hold_not_active", `The hold is ${row.status}, not in checkout.`);
    if (this.cancelled) return fail("event_cancelled", "This event was cancelled during checkout.");
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("UPDATE holds SET status = 'sold', order_id = ? WHERE id = ?", message.orderId, holdId);
      this.moveHoldSeats(row, "sold");
      this.sql.exec("UPDATE counters SET held = held - ?, sold = sold + ? WHERE id = 0", row.quantity, row.quantity);
      this.sql.exec(
        "INSERT INTO orders (id, hold_id, user_id, body, message, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        message.orderId,
        holdId,
        message.userId,
        // "": the document is the message's own (orderBodyOf), not stored twice.
        "",
        JSON.stringify(message),
        now,
      );
      // Outbox: the order stays here until its shard confirms it (confirmStored).
      this.sql.exec(
        "INSERT OR IGNORE INTO order_outbox (order_id, due_at, attempts) VALUES (?, ?, 0)",
        message.orderId,
        now + OUTBOX_RESEND_MS,
      );
      this.noteLedger(holdId);
    });
    this.counts.held -= row.quantity;
    this.counts.sold += row.quantity;
    this.markDirty(now);
    this.scheduleAlarm(now + OUTBOX_RESEND_MS);
    // The ledger counts the places either way (in checkout or sold) until the hold's expiry: the alarm
    // settles `sold` with the other notes (one call per ledger); near the expiry, now, without holding the
    // answer. The note stays until it lands.
    void this.settleLedgerSoon(holdId, row.expires_at, now);
    // The hand-off to the orders queue, after the answer and with the orders recorded alongside (the
    // output gate sends nothing before the commit); a failure leaves the order to the outbox.
    if (handOff) void this.handingOff.add(message);
    return ok(null);
  }

  /**
   * Ends a failed checkout: the hold is active again and lives at least a grace period more (so the buyer
   * can retry), but never past its creation + holdSeconds + one grace period, however many payments
   * fail. The buyer's LimitLedger is settled before the answer. Idempotent.
   */
  async abortCheckout(holdId: string): Promise<Outcome<HoldView>> {
    if (!this.config) return fail("not_found", "No such hold.");
    const row = this.holdRow(holdId);
    if (!row) return fail("not_found", "No such hold.");
    if (row.status === "checking_out" && this.cancelled) {
      // The event was cancelled during this checkout: its places go back, no retry is possible.
      this.ctx.storage.transactionSync(() => {
        this.sql.exec("UPDATE holds SET status = 'active' WHERE id = ?", holdId);
        this.releaseRow({ ...row, status: "active" }, "released");
      });
      this.markDirty(Date.now());
    } else if (row.status === "checking_out") {
      const now = Date.now();
      const cap = row.created_at + this.cfg().holdSeconds * 1000 + this.timings.graceMs;
      const expiresAt = Math.min(Math.max(row.expires_at, now + this.timings.graceMs), cap);
      this.ctx.storage.transactionSync(() => {
        this.sql.exec("UPDATE holds SET status = 'active', expires_at = ? WHERE id = ?", expiresAt, holdId);
        this.noteLedger(holdId);
      });
      this.noteExpiry(expiresAt);
      this.scheduleAlarm(expiresAt);
      // Past its cap already: it expires now, not at the next call.
      this.expireDue(now);
    }
    await this.settleLedger(holdId);
    return ok(this.view(this.holdRow(holdId) as HoldRow));
  }

  /**
   * What a payment settled after the fact (card webhook) finds for its checkout attempt `key`: `awaiting`
   * (the hold is in checkout for exactly this attempt and no void of it is under way), `sold` (this
   * attempt's order is recorded), or `gone` (expired, released, reopened, another attempt, or voided: the
   * payment must be refunded). Carries the hold's owner and view when the hold exists.
   */
  checkoutOf(holdId: string, key: string): { state: "awaiting" | "sold" | "gone"; userId?: string; hold?: HoldView } {
    const row = this.holdRow(holdId);
    if (!row) return { state: "gone" };
    return { state: this.checkoutState(row, key), userId: row.user_id, hold: this.view(row) };
  }

  /** {@link checkoutOf}'s state for a hold row already read. */
  private checkoutState(row: HoldRow, key: string): "awaiting" | "sold" | "gone" {
    if (paymentKey(row.id, row.checkout_attempt) !== key) return "gone";
    if (row.status === "sold") return "sold";
    if (row.status !== "checking_out") return "gone";
    return this.sql.exec("SELECT 1 FROM refunds WHERE idempotency_key = ?", key).toArray().length > 0 ? "gone" : "awaiting";
  }

  /**
   * Records a provider webhook event once handled. `seen` answers what an earlier delivery left: `new`,
   * `duplicate` (the provider's own retry: same event, a fresh signature) or `replayed` (the very same
   * signed delivery again).
   */
  providerEventSeen(id: string, signature: string): "new" | "duplicate" | "replayed" {
    const row = this.sql.exec<{ signature: string }>("SELECT signature FROM provider_events WHERE id = ?", id).toArray()[0];
    if (!row) return "new";
    return row.signature === signature ? "replayed" : "duplicate";
  }

  /** Notes a handled provider event (see {@link providerEventSeen}). */
  recordProviderEvent(id: string, signature: string, outcome: string): void {
    this.sql.exec(
      "INSERT INTO provider_events (id, signature, outcome, received_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
      id,
      signature,
      outcome,
      Date.now(),
    );
  }

  /** An order recorded here, if `userId` owns it. */
  getOrder(orderId: string, userId: string): Outcome<StoredOrder> {
    if (!this.config) return fail("not_found", "No such order.");
    const order = this.orderRow(orderId);
    if (!order || order.userId !== userId) return fail("not_found", "No such order.");
    return ok({ ...order, body: refunds.currentOrder(this.sql, order.body) });
  }

  // ───────────────────────────── RPC: moving GA capacity between shards (inventory-capacity.ts) ─────────────────────────────

  /**
   * Lends up to `most` available places of this GA shard to shard `toShard` of the same section (the edge
   * then delivers them with {@link receiveCapacity}, and this object's alarm again until it is told they
   * arrived). Idempotent per `transferId`.
   */
  lendCapacity(transferId: string, toShard: number, most: number): Outcome<{ lent: number }> {
    if (!this.config) return fail("not_found", "This shard has not sold anything.");
    const cfg = this.cfg();
    if (cfg.kind !== "ga" || toShard === cfg.shard || toShard < 0 || toShard >= cfg.shards)
      return fail("validation_failed", "Capacity moves only between the shards of one GA section.");
    if (this.cancelled) return fail("event_cancelled", "This event is cancelled.");
    const now = Date.now();
    this.expireDue(now, false);
    const lent = capacityMoves.lend(this.sql, this.ctx.storage, this.counts.available, { transferId, toShard, most }, now);
    if (!lent.ok) return lent;
    this.loadCounts();
    this.markDirty(now);
    this.scheduleAlarm(now + capacityMoves.REDELIVER_AFTER_MS);
    return lent;
  }

  /** Takes places another shard lent (idempotent per `transferId`). */
  receiveCapacity(transferId: string, fromShard: number, quantity: number): { added: boolean } {
    if (!this.config) throw new Error("inventory not initialized: capacity cannot arrive here");
    if (!Number.isInteger(quantity) || quantity < 1) throw new Error(`bad capacity move ${transferId}: ${quantity}`);
    const now = Date.now();
    const added = capacityMoves.receive(this.sql, this.ctx.storage, { transferId, fromShard, quantity }, now);
    if (added) {
      this.loadCounts();
      this.markDirty(now);
    }
    return { added };
  }

  /** The receiver has these moves: forget them. */
  capacityDelivered(transferIds: string[]): void {
    if (this.config) capacityMoves.delivered(this.sql, transferIds);
  }

  /** Delivers moves the edge did not confirm (its request failed or crashed between the steps). */
  private async redeliverCapacity(now: number): Promise<void> {
    const moves = capacityMoves.undelivered(this.sql, now);
    if (!moves.length) return;
    const cfg = this.cfg();
    for (const m of moves) {
      try {
        const to = this.env.INVENTORY.get(
          this.env.INVENTORY.idFromName(inventoryName({ eventId: cfg.eventId, sectionId: cfg.sectionId, shard: m.toShard })),
        );
        await to.receiveCapacity(m.transferId, cfg.shard, m.quantity);
        capacityMoves.delivered(this.sql, [m.transferId]);
      } catch (err) {
        capacityMoves.noteAttempt(this.sql, m.transferId);
        log.error("capacity move not delivered; the alarm retries", { transferId: m.transferId, toShard: m.toShard, error: String(err) });
      }
    }
  }

  // ───────────────────────────── RPC: refunds and cancellation (inventory-refunds.ts) ─────────────────────────────

  /**
   * Voids tickets of an order and returns their places to sale in one step, recording the refund
   * (pending until {@link settleRefund}). The caller checked who may refund it.
   */
  refundOrder(orderId: string, ask: refunds.RefundAsk): Outcome<refunds.RefundDone> {
    if (!this.config) return fail("not_found", "No such order.");
    const stored = this.orderRow(orderId);
    const hold = stored ? this.holdRow(stored.holdId) : undefined;
    if (!stored || !hold) return fail("not_found", "No such order.");
    const host: refunds.RefundHost = {
      sql: this.sql,
      storage: this.ctx.storage,
      config: this.cfg(),
      noteLedger: (holdId) => this.noteLedger(holdId),
      returned: (n) => {
        this.counts.sold -= n;
        this.counts.available += n;
        this.markDirty(Date.now());
      },
    };
    const done = refunds.refundStep(host, stored, paymentKey(hold.id, hold.checkout_attempt), stored.message.payment.provider, ask);
    if (done.ok && done.value.refundKey) {
      this.scheduleAlarm(Date.now() + 1_000);
      void this.settleLedger(hold.id);
    }
    return done;
  }

  /**
   * Asks the provider for a recorded refund now (outside any transaction) and, once it confirmed, hands
   * the `order.refunded` message to the orders queue. True when the provider confirmed; otherwise the
   * alarm retries both.
   */
  async settleRefund(key: string): Promise<boolean> {
    if (!this.config) return false;
    if (!(await this.tryRefund(key))) return false;
    // Unless the alarm sent it meanwhile (it settles pending refunds too).
    await this.sendRefunded(refunds.refundOutboxDue(this.sql, Date.now(), key));
    return true;
  }

  /** The orders consumer stored these refunds in their shard: they leave the refund outbox. */
  confirmRefunds(keys: string[]): void {
    if (!this.config) return;
    refunds.confirmRefunds(this.sql, keys);
  }

  /**
   * Cancels this section's sale: holds and checkouts are refused from now on, active holds are released,
   * and the alarm queues a refund request per recorded order on the refunds queue. Idempotent.
   */
  async cancelSales(
    config: InventoryConfig,
    event: EventRouting,
    cancellation: { reason?: string; eventName?: string } = {},
  ): Promise<refunds.CancellationProgress> {
    this.ensure(config, event);
    const now = Date.now();
    this.expireDue(now);
    const active = this.sql.exec<HoldRow>("SELECT * FROM holds WHERE status = 'active'").toArray();
    this.ctx.storage.transactionSync(() => {
      if (!refunds.recordCancellation(this.sql, cancellation.reason, cancellation.eventName, now)) return;
      for (const row of active) this.releaseRow(row, "released");
    });
    this.cancelled = true;
    this.markDirty(now);
    this.scheduleAlarm(now);
    await this.settleLedger();
    return refunds.cancellationProgress(this.sql);
  }

  /** Cancellation progress (orders to refund, refunded). */
  cancellationProgress(): refunds.CancellationProgress {
    if (!this.config) return { cancelled: false, total: 0, refunded: 0 };
    return refunds.cancellationProgress(this.sql);
  }

  /** Orders recorded here whose shard has not confirmed them yet (the outbox), oldest first. */
  unsentOrders(limit = 100): StoredOrder[] {
    if (!this.config) return [];
    return this.sql
      .exec<{ id: string }>("SELECT o.id FROM order_outbox b JOIN orders o ON o.id = b.order_id ORDER BY o.created_at LIMIT ?", limit)
      .toArray()
      .map((r) => this.orderRow(r.id) as StoredOrder);
  }

  /** Orders recorded within one macrotask, handed to the orders queue together ({@link handOrdersOff}). */
  private readonly handingOff = new Gather<OrderMessage, void>(async (messages) => {
    await this.handOrdersOff(messages);
    return messages.map(() => undefined);
  });

  /**
   * Sends recorded orders' messages to the orders queue in as few `sendBatch` calls as its limits allow
   * (100 messages, 256 KB: at most {@link HAND_OFF_TICKETS} tickets a call), then marks them sent in one
   * transaction. A failed send leaves the rest to the outbox, which re-sends what is not marked sent
   * ({@link OUTBOX_RESEND_MS} after recording); the consumer is idempotent.
   */
  private async handOrdersOff(messages: OrderMessage[]): Promise<void> {
    const sent: string[] = [];
    try {
      for (const part of handOffParts(messages)) {
        await this.env.ORDERS_QUEUE.sendBatch(part.map((body) => ({ body, contentType: "json" as const })));
        sent.push(...part.map((m) => m.orderId));
      }
    } catch (err) {
      metric.queueSendFailures.inc({ queue: "orders" }, messages.length - sent.length);
      log.warn("order hand-off failed; the outbox re-sends", { count: messages.length - sent.length, error: String(err) });
    }
    if (!sent.length) return;
    metric.queueMessages.inc({ queue: "orders", action: "sent" }, sent.length);
    // Joins the next group commit (the holds and checkouts arriving meanwhile) rather than a commit of its own.
    await this.group.run(() => this.markOrdersSent(sent), 0);
  }

  /**
   * Marks orders as handed to the queue. They stay in the outbox until their shard confirms them; an
   * unconfirmed one is sent again after {@link OUTBOX_CONFIRM_MS}.
   */
  markOrdersSent(ids: string[]): void {
    if (!this.config) return;
    const now = Date.now();
    const list = JSON.stringify(ids);
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("UPDATE orders SET enqueued_at = ? WHERE id IN (SELECT value FROM json_each(?)) AND enqueued_at IS NULL", now, list);
      this.sql.exec(
        "UPDATE order_outbox SET due_at = ?, attempts = attempts + 1 WHERE order_id IN (SELECT value FROM json_each(?)) AND attempts = 0",
        now + outboxResendDelay(1),
        list,
      );
    });
  }

  /** The shard has these orders (the orders consumer confirms back): they leave the outbox. Idempotent. */
  confirmStored(ids: string[]): Promise<void> {
    // Group commit: shares a commit with the holds and checkouts arriving meanwhile.
    return this.group.run(() => {
      if (this.config) this.sql.exec("DELETE FROM order_outbox WHERE order_id IN (SELECT value FROM json_each(?))", JSON.stringify(ids));
    }, 0);
  }

  /**
   * Records a refund the edge could not complete (or did complete, for the record). Pending refunds are
   * retried by the alarm until the provider confirms them.
   */
  recordRefund(r: Omit<RefundRecord, "attempts">): void {
    this.cfg();
    const now = Date.now();
    this.sql.exec(
      `INSERT INTO refunds (idempotency_key, hold_id, provider, reason, status, charge_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (idempotency_key) DO UPDATE SET status = CASE WHEN refunds.status = 'pending' THEN excluded.status ELSE refunds.status END,
         charge_id = coalesce(excluded.charge_id, refunds.charge_id), updated_at = excluded.updated_at`,
      r.idempotencyKey,
      r.holdId,
      r.provider,
      r.reason,
      r.status,
      r.chargeId,
      now,
      now,
    );
    if (r.status === "pending") this.scheduleAlarm(now + 1_000);
  }

  /** Refunds recorded here. */
  refunds(): RefundRecord[] {
    if (!this.config) return [];
    return this.sql
      .exec<{
        idempotency_key: string;
        hold_id: string;
        provider: string;
        reason: string;
        status: RefundRecord["status"];
        charge_id: string | null;
        attempts: number;
      }>("SELECT * FROM refunds ORDER BY created_at")
      .toArray()
      .map((r) => ({
        idempotencyKey: r.idempotency_key,
        holdId: r.hold_id,
        provider: r.provider,
        reason: r.reason,
        status: r.status,
        chargeId: r.charge_id,
        attempts: r.attempts,
      }));
  }

  /** Every order recorded here with its time (reconciliation). */
  orderRecords(): { id: string; createdAt: number }[] {
    if (!this.config) return [];
    return this.sql
      .exec<{ id: string; created_at: number }>("SELECT id, created_at FROM orders ORDER BY created_at")
      .toArray()
      .map((r) => ({ id: r.id, createdAt: r.created_at }));
  }

  /** Every order id recorded here (reconciliation). */
  orderIds(): string[] {
    if (!this.config) return [];
    return this.sql
      .exec<{ id: string }>("SELECT id FROM orders ORDER BY created_at")
      .toArray()
      .map((r) => r.id);
  }

  // ───────────────────────────── RPC: tickets (lib/ticket-status.ts) ─────────────────────────────

  /** A ticket of an order recorded here, if `userId` bought it (null otherwise; `userId` null: a signed link). */
  getTicket(orderId: string, ticketId: string, userId: string | null): TicketView | null {
    return this.config ? (ownTicket(this.sql, orderId, ticketId, userId) ?? null) : null;
  }

  /**
   * Checks a ticket in (`by`: the organizer or admin); exactly once, however many gates scan it at once. The
   * first check-in's webhook leaves through this object's outbox (sent now; the alarm re-sends a refusal).
   */
  checkIn(orderId: string, ticketId: string, by: string): CheckInResult {
    if (!this.config) return { result: "not_found" };
    const r = checkIn(this.sql, orderId, ticketId, by, Date.now());
    if (r.result === "checked_in") {
      void sendAnnouncements(this.sql, this.env.NOTIFICATIONS_QUEUE, Date.now(), [ticketId]);
      this.rescheduleAlarm();
    }
    return r;
  }

  /** A page of the check-in list (tickets of the orders recorded here, with their status). */
  checkInList(afterOrderId: string, limit: number): { rows: CheckInRow[]; next: string | null } {
    return this.config ? checkInList(this.sql, afterOrderId, limit) : { rows: [], next: null };
  }

  /** The status of the marked tickets of these orders (absent: valid). */
  ticketStatuses(orderIds: string[]): Record<string, TicketStatus> {
    return this.config ? ticketStatuses(this.sql, orderIds) : {};
  }

  // ───────────────────────────── RPC: reads ─────────────────────────────

  /** Current counts (after expiring what is due). */
  snapshot(): InventoryCounts {
    if (!this.config) return { ...this.counts };
    this.expireDue(Date.now());
    return { ...this.counts };
  }

  /** Seat map of a seated section: every seat with its status. */
  seatMap(): { id: string; row: string; number: number; status: "available" | "held" | "sold" }[] {
    if (!this.config) return [];
    this.expireDue(Date.now());
    return this.sql
      .exec<{ id: string; row: string; number: number; status: "available" | "held" | "sold" }>(
        "SELECT id, row_id AS row, number, status FROM seats ORDER BY ord",
      )
      .toArray();
  }

  /** Health since the last report. */
  health(): InventoryHealth {
    const sorted = [...this.delays].sort((a, b) => a - b);
    const p95 = sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))] as number) : 0;
    const seconds = Math.max(0.001, (Date.now() - this.windowStart) / 1000);
    const activeHolds = !this.config
      ? 0
      : this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM holds WHERE status IN ('active','checking_out')").one().n;
    return { holdLatencyP95Ms: p95, holdsPerSecond: this.holdsInWindow / seconds, overloads: this.overloadsInWindow, activeHolds };
  }

  // ───────────────────────────── alarm ─────────────────────────────

  /**
   * Expires due holds, publishes the snapshot when it changed, settles the buyers' ledgers, (re-)sends
   * orders their shard has not confirmed (outbox), resolves checkouts that never finished (voiding their
   * charge), retries pending refunds, then reschedules. Each step is idempotent, so a repeated alarm is
   * harmless.
   */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.alarmAt = null;
    if (!this.config) return;
    this.expireDue(now);
    if (this.dirty && now - this.lastPublishAt >= PUBLISH_INTERVAL_MS - 50) await this.publish();
    await this.settleLedger();
    await this.flushOutbox(now);
    await this.flushAnalytics();
    await this.resolveStuckCheckouts(now);
    await this.retryRefunds();
    await this.sendRefunded(refunds.refundOutboxDue(this.sql, Date.now()));
    await this.queueCancellationRefunds();
    await this.redeliverCapacity(Date.now());
    await sendAnnouncements(this.sql, this.env.NOTIFICATIONS_QUEUE, Date.now());
    this.rescheduleAlarm();
  }

  /**
   * Hands due `order.refunded` messages to the orders queue (re-sent until the consumer confirms). `keys`
   * come from {@link refunds.refundOutboxDue} with no await since: they are marked sent before the send,
   * so the refund's own send and the alarm's never both send one message.
   */
  private async sendRefunded(keys: string[]): Promise<void> {
    const messages = keys.flatMap((k) => refunds.refundedMessage(this.sql, k, (id) => this.orderRow(id)) ?? []);
    if (!messages.length) return;
    const sent = messages.map((m) => m.refundKey);
    refunds.markRefundsSent(this.sql, sent, Date.now());
    try {
      await this.env.ORDERS_QUEUE.sendBatch(messages.map((body) => ({ body, contentType: "json" as const })));
    } catch (err) {
      refunds.unmarkRefundsSent(this.sql, sent);
      log.error("refund messages not queued; the alarm retries", { count: messages.length, error: String(err) });
      this.scheduleAlarm(Date.now() + 5_000);
    }
  }

  /** After a cancellation: queues refund requests for the recorded orders, 100 per call, from a cursor. */
  private async queueCancellationRefunds(): Promise<void> {
    for (let i = 0; i < 10; i++) {
      const next = refunds.nextCancellationBatch(this.sql, this.cfg().eventId);
      if (!next) return;
      try {
        await this.env.REFUNDS_QUEUE.sendBatch(next.messages.map((body) => ({ body, contentType: "json" as const })));
        refunds.advanceCancellation(this.sql, next.cursor);
      } catch (err) {
        log.error("cancellation refunds not queued; the alarm retries", { error: String(err) });
        this.scheduleAlarm(Date.now() + 5_000);
        return;
      }
    }
    this.scheduleAlarm(Date.now() + 100);
  }

  /**
   * Sends the outbox's due orders: never sent by the edge ({@link OUTBOX_RESEND_MS} after recording), or
   * sent and not confirmed by their shard (again after {@link outboxResendDelay}). A failed send is
   * tried again by the next alarm.
   */
  private async flushOutbox(now: number): Promise<void> {
    const due = this.sql
      .exec<{ id: string; message: string; attempts: number }>(
        "SELECT o.id, o.message, b.attempts FROM order_outbox b JOIN orders o ON o.id = b.order_id WHERE b.due_at <= ? ORDER BY b.due_at LIMIT 100",
        now,
      )
      .toArray();
    if (!due.length) return;
    try {
      // Messages were validated (orderMessage) when the checkout built them, before they were stored here.
      await this.env.ORDERS_QUEUE.sendBatch(due.map((d) => ({ body: JSON.parse(d.message) as unknown, contentType: "json" as const })));
      const sentAt = Date.now();
      this.ctx.storage.transactionSync(() => {
        for (const d of due) {
          this.sql.exec("UPDATE orders SET enqueued_at = coalesce(enqueued_at, ?) WHERE id = ?", sentAt, d.id);
          // A confirmation that arrived meanwhile deleted the row: nothing to update.
          this.sql.exec(
            "UPDATE order_outbox SET attempts = attempts + 1, due_at = ? WHERE order_id = ?",
            sentAt + outboxResendDelay(d.attempts + 1),
            d.id,
          );
        }
      });
      const resent = due.filter((d) => d.attempts > 0).length;
      if (resent) log.warn("outbox re-sent orders their shard has not confirmed", { count: resent });
    } catch (err) {
      log.error("outbox send failed; will retry", { count: due.length, error: String(err) });
    }
  }

  /** Queues the funnel events of expired holds (best effort: kept for the next alarm if the send fails). */
  private async flushAnalytics(): Promise<void> {
    if (!this.expiredEvents.length) return;
    const events = this.expiredEvents.splice(0, this.expiredEvents.length);
    try {
      await sendAnalytics(this.env.ANALYTICS_QUEUE, events);
    } catch (err) {
      if (this.expiredEvents.length < 10_000) this.expiredEvents.unshift(...events);
      log.warn("expiry analytics not queued; will retry", { count: events.length, error: String(err) });
    }
  }

  /** Checkouts with no outcome after CHECKOUT_TIMEOUT_MS: void any charge made for them, then reopen the hold. */
  private async resolveStuckCheckouts(now: number): Promise<void> {
    const stuck = this.sql
      .exec<HoldRow & { payment_method: string | null }>(
        "SELECT * FROM holds WHERE status = 'checking_out' AND checkout_at <= ? LIMIT 20",
        now - this.timings.timeoutMs,
      )
      .toArray();
    for (const row of stuck) {
      const key = paymentKey(row.id, row.checkout_attempt);
      this.recordRefund({
        idempotencyKey: key,
        holdId: row.id,
        provider: row.payment_method ?? "sandbox",
        reason: "checkout timed out",
        status: "pending",
        chargeId: null,
      });
      if (await this.tryRefund(key)) await this.abortCheckout(row.id);
    }
  }

  /** Retries pending refunds (at most 20 per alarm). */
  private async retryRefunds(): Promise<void> {
    const pending = this.sql
      .exec<{ idempotency_key: string }>("SELECT idempotency_key FROM refunds WHERE status = 'pending' LIMIT 20")
      .toArray();
    for (const r of pending) await this.tryRefund(r.idempotency_key);
  }

  /** Asks the provider to void the charge of `key`; records the outcome. True when settled. */
  private async tryRefund(key: string): Promise<boolean> {
    const rec = this.sql
      .exec<{ provider: string; status: string; total: number | null }>(
        "SELECT r.provider, r.status, h.total FROM refunds r LEFT JOIN holds h ON h.id = r.hold_id WHERE r.idempotency_key = ?",
        key,
      )
      .toArray()[0];
    if (!rec) return false;
    if (rec.status !== "pending") return true;
    const provider = paymentProvider(rec.provider, this.env);
    if (!provider) return false;
    this.sql.exec("UPDATE refunds SET attempts = attempts + 1, updated_at = ? WHERE idempotency_key = ?", Date.now(), key);
    try {
      const charge = rec.total !== null && this.config ? { amount: rec.total, currency: this.config.currency } : undefined;
      // A refund of some tickets (refund_parts) refunds its amount under its own key; a checkout's void refunds all.
      const part = refunds.refundPart(this.sql, key);
      const r =
        part && charge
          ? await provider.refund({ refundKey: key, chargeKey: part.chargeKey, amount: part.amount, charge })
          : await provider.voidCharge(key, undefined, charge);
      this.sql.exec(
        "UPDATE refunds SET status = ?, charge_id = coalesce(?, charge_id), updated_at = ? WHERE idempotency_key = ?",
        r.refunded ? "refunded" : "nothing_to_refund",
        r.chargeId ?? null,
        Date.now(),
        key,
      );
      return true;
    } catch (err) {
      log.error("refund failed; will retry", { key, error: String(err) });
      return false;
    }
  }

  // ───────────────────────────── internals ─────────────────────────────

  /**
   * The `inventory_slow` fault (lib/faults.ts, rehearsals only): after this call the object takes no other
   * for `delayMs`, like an object whose every call costs that long; callers queue behind it.
   */
  /** Under the fault `inventory_slow`, blocks the object for its delay; the block, or undefined. */
  private stallIfFaulted(): Promise<void> | undefined {
    const delay = faultWindow("inventory_slow")?.delayMs;
    if (delay) return this.ctx.blockConcurrencyWhile(() => new Promise<void>((r) => setTimeout(r, delay)));
    return undefined;
  }

  private cfg(): InventoryConfig {
    if (!this.config) throw new Error("inventory not initialized");
    return this.config;
  }

  /** First call initializes the DO with its section's seats/capacity; later calls must agree. */
  private ensure(config: InventoryConfig, event: EventRouting, eventVersion?: number): void {
    if (this.config) {
      const c = this.config;
      if (c.eventId !== config.eventId || c.sectionId !== config.sectionId || c.shard !== config.shard)
        throw new Error(`inventory ${inventoryName(c)} called as ${inventoryName(config)}`);
      // An edge that read an older event document does not roll the routing back.
      if (eventVersion === undefined || eventVersion >= this.eventVersion) this.event = event;
      if (eventVersion !== undefined && eventVersion > this.eventVersion) this.keepEventVersion(event, eventVersion);
      return;
    }
    this.ctx.storage.transactionSync(() => {
      this.sql.exec(SCHEMA);
      this.sql.exec(refunds.REFUNDS_SCHEMA);
      this.sql.exec(CHECK_IN_SCHEMA);
      this.sql.exec(capacityMoves.CAPACITY_SCHEMA);
      this.sql.exec("INSERT INTO meta (k, v) VALUES ('outbox_v2', '1')");
      this.sql.exec("INSERT INTO meta (k, v) VALUES ('config', ?)", JSON.stringify(config));
      this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('event', ?)", JSON.stringify(event));
      let capacity = config.capacity;
      if (config.kind === "seated") {
        let ord = 0;
        for (const row of config.rows ?? []) {
          for (let n = 1; n <= row.seats; n++)
            this.sql.exec("INSERT INTO seats (id, row_id, number, ord) VALUES (?, ?, ?, ?)", `${row.id}-${n}`, row.id, n, ord++);
        }
        capacity = ord;
      }
      this.sql.exec("INSERT INTO counters (id, capacity, held, sold) VALUES (0, ?, 0, 0)", capacity);
    });
    this.config = config;
    this.event = event;
    this.loadCounts();
    if (eventVersion !== undefined) this.keepEventVersion(event, eventVersion);
  }

  /** Keeps `event` as the routing of `version` durably, so {@link place} needs no configuration until a newer one. */
  private keepEventVersion(event: EventRouting, version: number): void {
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('event', ?), ('event_version', ?)", JSON.stringify(event), String(version));
    this.eventVersion = version;
  }

  private loadCounts(): void {
    const row = this.sql
      .exec<{ capacity: number; held: number; sold: number }>("SELECT capacity, held, sold FROM counters WHERE id = 0")
      .toArray()[0];
    this.counts = row ? { ...row, available: row.capacity - row.held - row.sold } : { capacity: 0, available: 0, held: 0, sold: 0 };
  }

  /** Seats for a seated hold: the named ones if all are available, else best available by row order. */
  private pickSeats(req: HoldRequest): Outcome<string[]> {
    if (req.seats?.length) {
      const unique = [...new Set(req.seats)];
      if (unique.length !== req.seats.length) return fail("validation_failed", "A seat is named twice.");
      if (unique.length > MAX_SEATS_PER_HOLD) return fail("validation_failed", `At most ${MAX_SEATS_PER_HOLD} seats per hold.`);
      const placeholders = unique.map(() => "?").join(",");
      const found = this.sql
        .exec<{ id: string; status: string }>(`SELECT id, status FROM seats WHERE id IN (${placeholders})`, ...unique)
        .toArray();
      if (found.length !== unique.length) {
        const known = new Set(found.map((s) => s.id));
        return fail("validation_failed", `Unknown seat(s): ${unique.filter((s) => !known.has(s)).join(", ")}.`);
      }
      const taken = found.filter((s) => s.status !== "available").map((s) => s.id);
      if (taken.length) {
        if (this.counts.available === 0) return fail("sold_out", "This section is sold out.");
        return fail("seats_unavailable", `Not available: ${taken.join(", ")}.`);
      }
      return ok(unique);
    }
    const quantity = req.quantity ?? 1;
    if (this.counts.available === 0) return fail("sold_out", "This section is sold out.");
    if (this.counts.available < quantity) return fail("seats_unavailable", `Only ${this.counts.available} seats left.`);
    const ids = this.sql
      .exec<{ id: string }>("SELECT id FROM seats WHERE status = 'available' ORDER BY ord LIMIT ?", quantity)
      .toArray()
      .map((r) => r.id);
    return ok(ids);
  }

  /**
   * Expires every active hold whose time has come. Idempotent. The hold path passes `force = false`: it
   * skips the query while no active hold can be due ({@link nextExpiryAt}); every other call looks.
   */
  private expireDue(now: number, force = true): void {
    if (!force && now < this.nextExpiryAt) return;
    const due = this.sql
      .exec<HoldRow>("SELECT * FROM holds WHERE status = 'active' AND expires_at <= ? ORDER BY expires_at LIMIT 500", now)
      .toArray();
    if (due.length < 500) {
      const next = this.sql
        .exec<{ t: number | null }>("SELECT min(expires_at) AS t FROM holds WHERE status = 'active' AND expires_at > ?", now)
        .one().t;
      this.nextExpiryAt = next ?? Number.POSITIVE_INFINITY;
    }
    this.expireRows(due, now);
  }

  /** Expires `due` (active holds whose time has come): their places go back on sale, and their funnel events wait for the alarm. */
  private expireRows(due: HoldRow[], now: number): void {
    if (!due.length) return;
    this.ctx.storage.transactionSync(() => {
      for (const row of due) this.releaseRow(row, "expired");
    });
    metric.holdsExpired.inc({}, due.length);
    const at = new Date(now).toISOString();
    const eventId = this.cfg().eventId;
    for (const row of due)
      this.expiredEvents.push({
        id: `hold.expired:${row.id}`,
        kind: "hold.expired",
        eventId,
        at,
        userId: row.user_id,
        quantity: row.quantity,
        amount: 0,
      });
    this.markDirty(now);
  }

  /** A hold is active until `expiresAt`: the next expiry query runs no later than then. */
  private noteExpiry(expiresAt: number): void {
    if (expiresAt < this.nextExpiryAt) this.nextExpiryAt = expiresAt;
  }

  /** Funnel events of expired holds, queued by the next alarm. */
  private expiredEvents: AnalyticsEvent[] = [];

  /** Returns a hold's places to sale (inside a transaction). */
  private releaseRow(row: HoldRow, status: "released" | "expired"): void {
    this.sql.exec("UPDATE holds SET status = ? WHERE id = ? AND status = 'active'", status, row.id);
    this.noteLedger(row.id);
    this.moveHoldSeats(row, "available");
    this.sql.exec("UPDATE counters SET held = held - ? WHERE id = 0", row.quantity);
    this.counts.held -= row.quantity;
    this.counts.available += row.quantity;
  }

  /**
   * Moves a hold's named seats (a GA hold has none) out of `held`, found by primary key from the hold's own
   * list: `sold` keeps them on the hold, `available` frees them.
   */
  private moveHoldSeats(row: HoldRow, to: "sold" | "available"): void {
    const seats = JSON.parse(row.seats) as string[];
    if (!seats.length) return;
    const ids = seats.map(() => "?").join(", ");
    const change = to === "sold" ? "status = 'sold' WHERE" : "status = 'available', hold_id = NULL WHERE status = 'held' AND";
    this.sql.exec(`UPDATE seats SET ${change} id IN (${ids}) AND hold_id = ?`, ...seats, row.id);
  }

  private holdRow(id: string): HoldRow | undefined {
    return this.sql.exec<HoldRow>("SELECT * FROM holds WHERE id = ?", id).toArray()[0];
  }

  private orderRow(id: string): StoredOrder | undefined {
    const r = this.sql
      .exec<{ id: string; hold_id: string; user_id: string; body: string; message: string; created_at: number }>(
        "SELECT * FROM orders WHERE id = ?",
        id,
      )
      .toArray()[0];
    if (!r) return undefined;
    const message = JSON.parse(r.message) as OrderMessage;
    return { id: r.id, holdId: r.hold_id, userId: r.user_id, body: orderBodyOf(r.body, message), message, createdAt: r.created_at };
  }

  private view(row: HoldRow): HoldView {
    const cfg = this.cfg();
    const v: HoldView = {
      id: row.id,
      eventId: cfg.eventId,
      sectionId: cfg.sectionId,
      seats: JSON.parse(row.seats) as string[],
      quantity: row.quantity,
      total: row.total,
      currency: cfg.currency,
      expiresAt: new Date(row.expires_at).toISOString(),
      status: row.status,
    };
    if (row.order_id) v.orderId = row.order_id;
    return v;
  }

  private observe(now: number, sentAt: number | undefined): void {
    const delay = sentAt !== undefined ? Math.max(0, now - sentAt) : 0;
    if (this.delays.length < 10_000) this.delays.push(delay);
    if (delay > OVERLOAD_DELAY_MS) this.overloadsInWindow++;
  }

  /** Notes a change (durably: a restart publishes it too); the alarm publishes it within about a second. */
  private markDirty(now: number): void {
    if (this.dirty) return;
    this.dirty = true;
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('unpublished', '1')");
    this.scheduleAlarm(Math.max(now + 50, this.lastPublishAt + PUBLISH_INTERVAL_MS));
  }

  /**
   * Notes (inside the transaction that changed it) that the buyer's LimitLedger must learn a hold's new
   * state. {@link settleLedger} sends it; until the ledger has it the note stays, and the alarm retries.
   */
  private noteLedger(holdId: string): void {
    this.ledgerVersion++;
    this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('ledger_version', ?)", String(this.ledgerVersion));
    this.sql.exec(
      "INSERT INTO ledger_sync (hold_id, version) VALUES (?, ?) ON CONFLICT (hold_id) DO UPDATE SET version = excluded.version",
      holdId,
      this.ledgerVersion,
    );
  }

  /**
   * Tells the buyers' LimitLedgers the current state of holds noted by {@link noteLedger} (one hold, or up
   * to {@link LEDGER_SETTLE_BATCH}), one call per ledger: every path that reopens, expires, releases or sells
   * a hold ends here, so a ledger entry never outlives its hold. The version makes a late, older settlement
   * harmless. Failures stay noted (the alarm retries).
   */
  private async settleLedger(holdId?: string): Promise<void> {
    const event = this.event;
    if (!event) return;
    // A row's hold columns are null when the hold is gone.
    type NoteRow = HoldRow & { note_hold_id: string; note_version: number; voided: number };
    const rows = (
      holdId
        ? this.sql.exec<NoteRow>(`${LEDGER_NOTES_SQL} WHERE ledger_sync.hold_id = ?`, holdId)
        : this.sql.exec<NoteRow>(`${LEDGER_NOTES_SQL} ORDER BY ledger_sync.version LIMIT ?`, LEDGER_SETTLE_BATCH)
    ).toArray();
    const settling: { note: LedgerNote; settlement: LedgerSettlement }[] = [];
    for (const r of rows) {
      const note: LedgerNote = { hold_id: r.note_hold_id, version: r.note_version };
      if (!r.id) {
        this.sql.exec("DELETE FROM ledger_sync WHERE hold_id = ?", note.hold_id);
        continue;
      }
      settling.push({
        note,
        settlement: {
          userId: r.user_id,
          holdKey: r.id,
          quantity: r.quantity - r.voided,
          state: r.status === "active" ? "held" : r.status === "checking_out" || r.status === "sold" ? r.status : "released",
          expiresAt: r.expires_at,
          version: note.version,
        },
      });
    }
    await Promise.all(
      [...groupBy(settling, (s) => limitName(event, s.settlement.userId))].map(async ([name, group]) => {
        try {
          await limitStubNamed(this.env.LIMIT_LEDGER, name).settleMany(group.map((s) => s.settlement));
          this.ctx.storage.transactionSync(() => {
            for (const { note } of group)
              this.sql.exec("DELETE FROM ledger_sync WHERE hold_id = ? AND version = ?", note.hold_id, note.version);
          });
        } catch (err) {
          log.error("ledger settlement failed; will retry", {
            holds: group.slice(0, 5).map((s) => s.note.hold_id),
            count: group.length,
            error: String(err),
          });
          this.scheduleAlarm(Date.now() + LEDGER_RETRY_MS);
        }
      }),
    );
  }

  /**
   * A hold's reservation counts its places until the hold's expiry (+ slack), so a note with time to spare
   * waits for the next alarm (within {@link LEDGER_DEFER_MS}, retried until it lands), which settles it with
   * the other notes, one call per ledger; a checkout that begins and completes meanwhile costs one
   * settlement. Near the expiry the note is settled at once (the returned promise; the caller decides
   * whether to wait for it).
   */
  private settleLedgerSoon(holdId: string, expiresAt: number, now: number): Promise<void> {
    if (expiresAt - now < LEDGER_DEFER_MIN_LEFT_MS) return this.settleLedger(holdId);
    this.scheduleAlarm(now + LEDGER_DEFER_MS);
    return Promise.resolve();
  }

  private scheduleAlarm(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  /** After an alarm: the next expiry, or the next publish if a change is still unpublished. */
  private rescheduleAlarm(): void {
    const next = this.sql.exec<{ t: number | null }>("SELECT min(expires_at) AS t FROM holds WHERE status = 'active'").one().t;
    const candidates: number[] = [];
    if (next !== null) candidates.push(next);
    if (this.dirty) candidates.push(this.lastPublishAt + PUBLISH_INTERVAL_MS);
    const outboxDue = this.sql.exec<{ t: number | null }>("SELECT min(due_at) AS t FROM order_outbox").one().t;
    if (outboxDue !== null) candidates.push(Math.max(outboxDue, Date.now() + 100));
    if (this.sql.exec("SELECT 1 FROM ledger_sync LIMIT 1").toArray().length) candidates.push(Date.now() + LEDGER_RETRY_MS);
    const oldestCheckout = this.sql
      .exec<{ t: number | null }>("SELECT min(checkout_at) AS t FROM holds WHERE status = 'checking_out'")
      .one().t;
    if (oldestCheckout !== null) candidates.push(oldestCheckout + this.timings.timeoutMs);
    if (this.sql.exec("SELECT 1 FROM refunds WHERE status = 'pending' LIMIT 1").toArray().length) candidates.push(Date.now() + 30_000);
    if (this.sql.exec("SELECT 1 FROM refund_parts WHERE confirmed = 0 LIMIT 1").toArray().length) candidates.push(Date.now() + 30_000);
    if (this.sql.exec("SELECT 1 FROM cancellation WHERE done = 0").toArray().length) candidates.push(Date.now() + 100);
    const redeliver = capacityMoves.nextRedeliveryAt(this.sql);
    if (redeliver !== null) candidates.push(Math.max(redeliver, Date.now() + 100));
    const announceDue = nextAnnouncementAt(this.sql);
    if (announceDue !== null) candidates.push(Math.max(announceDue, Date.now() + 100));
    if (candidates.length) this.scheduleAlarm(Math.min(...candidates));
  }

  /** Sends counts and health to the event's WaitingRoom DO. A failure keeps the change dirty for the next alarm. */
  private async publish(): Promise<void> {
    const cfg = this.config;
    const event = this.event;
    if (!cfg || !event) return;
    const now = Date.now();
    const report: InventoryReport = { sectionId: cfg.sectionId, shard: cfg.shard, at: now, ...this.counts, health: this.health() };
    this.dirty = false;
    this.lastPublishAt = now;
    this.delays = [];
    this.holdsInWindow = 0;
    this.overloadsInWindow = 0;
    this.windowStart = now;
    try {
      // The WaitingRoom DO's side of this contract is `reportInventory(event, report)` (lib/inventory-types).
      const room = this.env.WAITING_ROOM.get(this.env.WAITING_ROOM.idFromName(cfg.eventId)) as unknown as InventoryReportSink;
      await room.reportInventory(event, report);
      if (!this.dirty) this.sql.exec("DELETE FROM meta WHERE k = 'unpublished'");
    } catch (err) {
      this.dirty = true;
      log.error("inventory publish failed", { inventory: inventoryName(cfg), error: String(err) });
    }
  }
}

import { DurableObject } from "cloudflare:workers";
import { type AnalyticsEvent, sendAnalytics } from "../lib/analytics-event";
import type { EventRouting } from "../lib/event-schema";
import { faultWindow } from "../lib/faults";
import { inventoryName, orderIdForHold } from "../lib/hold-id";
import type { HoldStatus, HoldView, InventoryConfig, InventoryCounts, InventoryHealth, InventoryReport } from "../lib/inventory-types";
import { log } from "../lib/log";
import { metric } from "../lib/metric-catalog";
import type { Order, OrderMessage, RefundRecord, StoredOrder } from "../lib/order";
import { paymentProvider } from "../lib/payment-methods";
import { fail, type Outcome, ok } from "../lib/problem";
import { parseTraceparent } from "../lib/trace";

/** What an Inventory DO publishes to: the event's WaitingRoom DO. */
interface InventoryReportSink {
  reportInventory(event: EventRouting, report: InventoryReport): Promise<void>;
}

/** A hold request as the edge sends it. */
export interface HoldRequest {
  holdId: string;
  userId: string;
  /** Named seats (seated sections). */
  seats?: string[];
  /** Number of places (GA; or best-available seats in a seated section). */
  quantity?: number;
  /** Edge clock when the call was sent: the DO derives its queueing delay from it. */
  sentAt?: number;
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
const CHECKOUT_TIMEOUT_MS = 120_000;
/** Outbox: orders not confirmed as queued after this long are re-sent by the alarm (ms). */
const OUTBOX_RESEND_MS = 5_000;
/** After a failed payment the hold lives at least this much longer, so the buyer can retry (ms). */
const CHECKOUT_ABORT_GRACE_MS = 60_000;
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
CREATE INDEX IF NOT EXISTS orders_unsent ON orders(enqueued_at) WHERE enqueued_at IS NULL;
CREATE TABLE IF NOT EXISTS refunds (
  idempotency_key TEXT PRIMARY KEY, hold_id TEXT NOT NULL, provider TEXT NOT NULL, reason TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending','refunded','nothing_to_refund')), charge_id TEXT,
  attempts INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS provider_events (id TEXT PRIMARY KEY, signature TEXT NOT NULL, outcome TEXT NOT NULL, received_at INTEGER NOT NULL);
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
  private counts: InventoryCounts = { capacity: 0, available: 0, held: 0, sold: 0 };
  /** Alarm time we last set (null: none). */
  private alarmAt: number | null = null;
  private dirty = false;
  private lastPublishAt = 0;
  // Health window (since the last publish).
  private delays: number[] = [];
  private holdsInWindow = 0;
  private overloadsInWindow = 0;
  private windowStart = Date.now();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    void ctx.blockConcurrencyWhile(async () => {
      this.sql.exec(SCHEMA);
      const cfg = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'config'").toArray()[0];
      if (cfg) this.config = JSON.parse(cfg.v) as InventoryConfig;
      const ev = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'event'").toArray()[0];
      if (ev) this.event = JSON.parse(ev.v) as EventRouting;
      this.loadCounts();
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  // ───────────────────────────── RPC: holds ─────────────────────────────

  /** Initializes the DO for its section (idempotent; every other write call does this too). */
  init(config: InventoryConfig, event: EventRouting): InventoryCounts {
    this.ensure(config, event);
    return { ...this.counts };
  }

  /** Holds seats or a quantity for `req.userId`. Atomic; fails with seats_unavailable / sold_out / validation_failed. */
  hold(config: InventoryConfig, event: EventRouting, req: HoldRequest): Outcome<HoldView> {
    this.stallIfFaulted();
    this.ensure(config, event);
    const now = Date.now();
    this.observe(now, req.sentAt);
    this.holdsInWindow++;
    this.expireDue(now);
    const cfg = this.cfg();

    if (this.sql.exec("SELECT 1 FROM holds WHERE id = ?", req.holdId).toArray().length)
      return fail("validation_failed", "That hold id is already in use.");

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
    this.ctx.storage.transactionSync(() => {
      if (seats.length) {
        for (const id of seats)
          this.sql.exec("UPDATE seats SET status = 'held', hold_id = ? WHERE id = ? AND status = 'available'", req.holdId, id);
      }
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
    this.counts.held += quantity;
    this.counts.available -= quantity;
    this.markDirty(now);
    this.scheduleAlarm(expiresAt);
    return ok(this.view(this.holdRow(req.holdId) as HoldRow));
  }

  /** The hold if `userId` owns it (another user's hold is "not found"). Expires it first when due. */
  getHold(holdId: string, userId: string): Outcome<HoldView> {
    this.expireDue(Date.now());
    const row = this.holdRow(holdId);
    if (!row || row.user_id !== userId) return fail("not_found", "No such hold.");
    return ok(this.view(row));
  }

  /** Releases an active hold of `userId`; releasing an already released or expired hold is a no-op. */
  release(holdId: string, userId: string): Outcome<HoldView> {
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
    return ok(this.view(this.holdRow(holdId) as HoldRow));
  }

  // ───────────────────────────── RPC: checkout ─────────────────────────────

  /**
   * Locks an active hold for checkout: from now on it cannot expire until {@link completeCheckout} or
   * {@link abortCheckout}. A hold already in checkout answers `idempotency_conflict`; an expired one
   * `hold_expired`; a sold one returns its view with `status: "sold"` (the caller replays the order).
   * `paymentKey` is the idempotency key for this attempt's charge.
   */
  beginCheckout(holdId: string, userId: string, paymentMethod: string): Outcome<{ hold: HoldView; paymentKey: string }> {
    this.stallIfFaulted();
    const now = Date.now();
    this.expireDue(now);
    const row = this.holdRow(holdId);
    if (!row || row.user_id !== userId) return fail("not_found", "No such hold.");
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
        this.sql.exec(
          "UPDATE holds SET status = 'checking_out', checkout_at = ?, payment_method = ?, checkout_attempt = ? WHERE id = ?",
          now,
          paymentMethod,
          attempt,
          holdId,
        );
        this.scheduleAlarm(now + CHECKOUT_TIMEOUT_MS);
        return ok({ hold: this.view(this.holdRow(holdId) as HoldRow), paymentKey: paymentKey(holdId, attempt) });
      }
    }
  }

  /**
   * Marks a hold in checkout sold and records its order durably, in one transaction. Idempotent: a
   * second call for the same hold returns the order already stored.
   */
  completeCheckout(holdId: string, order: StoredOrder, forPaymentKey?: string): Outcome<StoredOrder> {
    this.stallIfFaulted();
    const row = this.holdRow(holdId);
    if (!row) return fail("not_found", "No such hold.");
    // A payment settled later (card webhook) completes only the attempt it paid for, and never one whose
    // charge is already being voided.
    if (forPaymentKey !== undefined && this.checkoutOf(holdId, forPaymentKey).state !== "awaiting" && row.status !== "sold")
      return fail("hold_not_active", "No checkout is waiting for this payment.");
    if (forPaymentKey !== undefined && row.status === "sold" && forPaymentKey !== paymentKey(holdId, row.checkout_attempt))
      return fail("hold_not_active", "The hold was sold through another payment.");
    if (row.status === "sold") {
      const existing = this.orderRow(row.order_id ?? "");
      return existing ? ok(existing) : fail("internal_error", "Sold hold without an order.");
    }
    if (row.status !== "checking_out") return fail("hold_not_active", `The hold is ${row.status}, not in checkout.`);
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("UPDATE holds SET status = 'sold', order_id = ? WHERE id = ?", order.id, holdId);
      this.sql.exec("UPDATE seats SET status = 'sold' WHERE hold_id = ?", holdId);
      this.sql.exec("UPDATE counters SET held = held - ?, sold = sold + ? WHERE id = 0", row.quantity, row.quantity);
      this.sql.exec(
        "INSERT INTO orders (id, hold_id, user_id, body, message, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        order.id,
        holdId,
        order.userId,
        JSON.stringify(order.body),
        JSON.stringify(order.message),
        order.createdAt,
      );
    });
    this.counts.held -= row.quantity;
    this.counts.sold += row.quantity;
    this.markDirty(now);
    this.scheduleAlarm(now + OUTBOX_RESEND_MS);
    const traceparent = typeof order.message.traceparent === "string" ? order.message.traceparent : undefined;
    log.info("order recorded", { orderId: order.id, holdId, traceId: parseTraceparent(traceparent)?.traceId });
    return ok(order);
  }

  /** Ends a failed checkout: the hold is active again and lives at least {@link CHECKOUT_ABORT_GRACE_MS} more. */
  abortCheckout(holdId: string): Outcome<HoldView> {
    const row = this.holdRow(holdId);
    if (!row) return fail("not_found", "No such hold.");
    if (row.status !== "checking_out") return ok(this.view(row));
    const expiresAt = Math.max(row.expires_at, Date.now() + CHECKOUT_ABORT_GRACE_MS);
    this.sql.exec("UPDATE holds SET status = 'active', expires_at = ? WHERE id = ?", expiresAt, holdId);
    this.scheduleAlarm(expiresAt);
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
    const current = paymentKey(holdId, row.checkout_attempt) === key;
    const voiding = this.sql.exec("SELECT 1 FROM refunds WHERE idempotency_key = ?", key).toArray().length > 0;
    const state = current && row.status === "sold" ? "sold" : current && row.status === "checking_out" && !voiding ? "awaiting" : "gone";
    return { state, userId: row.user_id, hold: this.view(row) };
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
    const order = this.orderRow(orderId);
    if (!order || order.userId !== userId) return fail("not_found", "No such order.");
    return ok(order);
  }

  /** Orders recorded here that were not yet handed to the orders queue (outbox). */
  unsentOrders(limit = 100): StoredOrder[] {
    return this.sql
      .exec<{ id: string }>("SELECT id FROM orders WHERE enqueued_at IS NULL ORDER BY created_at LIMIT ?", limit)
      .toArray()
      .map((r) => this.orderRow(r.id) as StoredOrder);
  }

  /** Marks orders as handed to the queue. */
  markOrdersSent(ids: string[]): void {
    const now = Date.now();
    for (const id of ids) this.sql.exec("UPDATE orders SET enqueued_at = ? WHERE id = ? AND enqueued_at IS NULL", now, id);
  }

  /**
   * Records a refund the edge could not complete (or did complete, for the record). Pending refunds are
   * retried by the alarm until the provider confirms them.
   */
  recordRefund(r: Omit<RefundRecord, "attempts">): void {
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
    return this.sql
      .exec<{ id: string; created_at: number }>("SELECT id, created_at FROM orders ORDER BY created_at")
      .toArray()
      .map((r) => ({ id: r.id, createdAt: r.created_at }));
  }

  /** Every order id recorded here (reconciliation). */
  orderIds(): string[] {
    return this.sql
      .exec<{ id: string }>("SELECT id FROM orders ORDER BY created_at")
      .toArray()
      .map((r) => r.id);
  }

  // ───────────────────────────── RPC: reads ─────────────────────────────

  /** Current counts (after expiring what is due). */
  snapshot(): InventoryCounts {
    this.expireDue(Date.now());
    return { ...this.counts };
  }

  /** Seat map of a seated section: every seat with its status. */
  seatMap(): { id: string; row: string; number: number; status: "available" | "held" | "sold" }[] {
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
    const activeHolds = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM holds WHERE status IN ('active','checking_out')").one().n;
    return { holdLatencyP95Ms: p95, holdsPerSecond: this.holdsInWindow / seconds, overloads: this.overloadsInWindow, activeHolds };
  }

  // ───────────────────────────── alarm ─────────────────────────────

  /**
   * Expires due holds, publishes the snapshot when it changed, re-sends orders the queue may not have
   * (outbox), resolves checkouts that never finished (voiding their charge), retries pending refunds,
   * then reschedules. Each step is idempotent, so a repeated alarm is harmless.
   */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.alarmAt = null;
    this.expireDue(now);
    if (this.dirty && now - this.lastPublishAt >= PUBLISH_INTERVAL_MS - 50) await this.publish();
    await this.flushOutbox(now);
    await this.flushAnalytics();
    await this.resolveStuckCheckouts(now);
    await this.retryRefunds();
    this.rescheduleAlarm();
  }

  /** Sends orders recorded more than OUTBOX_RESEND_MS ago and not yet marked as queued. */
  private async flushOutbox(now: number): Promise<void> {
    const due = this.sql
      .exec<{ id: string; message: string }>(
        "SELECT id, message FROM orders WHERE enqueued_at IS NULL AND created_at <= ? ORDER BY created_at LIMIT 100",
        now - OUTBOX_RESEND_MS,
      )
      .toArray();
    if (!due.length) return;
    try {
      // Messages were validated (orderMessage) when the checkout built them, before they were stored here.
      await this.env.ORDERS_QUEUE.sendBatch(due.map((d) => ({ body: JSON.parse(d.message) as unknown, contentType: "json" as const })));
      this.markOrdersSent(due.map((d) => d.id));
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
        now - CHECKOUT_TIMEOUT_MS,
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
      if (await this.tryRefund(key)) this.abortCheckout(row.id);
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
      const r = await provider.voidCharge(key, undefined, charge);
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
  private stallIfFaulted(): void {
    const delay = faultWindow("inventory_slow")?.delayMs;
    if (delay) void this.ctx.blockConcurrencyWhile(() => new Promise((r) => setTimeout(r, delay)));
  }

  private cfg(): InventoryConfig {
    if (!this.config) throw new Error("inventory not initialized");
    return this.config;
  }

  /** First call initializes the DO with its section's seats/capacity; later calls must agree. */
  private ensure(config: InventoryConfig, event: EventRouting): void {
    this.event = event;
    if (this.config) {
      const c = this.config;
      if (c.eventId !== config.eventId || c.sectionId !== config.sectionId || c.shard !== config.shard)
        throw new Error(`inventory ${inventoryName(c)} called as ${inventoryName(config)}`);
      return;
    }
    this.ctx.storage.transactionSync(() => {
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
    this.loadCounts();
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

  /** Expires every active hold whose time has come. Idempotent. */
  private expireDue(now: number): void {
    const due = this.sql
      .exec<HoldRow>("SELECT * FROM holds WHERE status = 'active' AND expires_at <= ? ORDER BY expires_at LIMIT 500", now)
      .toArray();
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

  /** Funnel events of expired holds, queued by the next alarm. */
  private expiredEvents: AnalyticsEvent[] = [];

  /** Returns a hold's places to sale (inside a transaction). */
  private releaseRow(row: HoldRow, status: "released" | "expired"): void {
    this.sql.exec("UPDATE holds SET status = ? WHERE id = ? AND status = 'active'", status, row.id);
    this.sql.exec("UPDATE seats SET status = 'available', hold_id = NULL WHERE hold_id = ? AND status = 'held'", row.id);
    this.sql.exec("UPDATE counters SET held = held - ? WHERE id = 0", row.quantity);
    this.counts.held -= row.quantity;
    this.counts.available += row.quantity;
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
    return r
      ? {
          id: r.id,
          holdId: r.hold_id,
          userId: r.user_id,
          body: JSON.parse(r.body) as Order,
          message: JSON.parse(r.message) as OrderMessage,
          createdAt: r.created_at,
        }
      : undefined;
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

  /** Notes a change; the alarm publishes it within about a second. */
  private markDirty(now: number): void {
    if (this.dirty) return;
    this.dirty = true;
    this.scheduleAlarm(Math.max(now + 50, this.lastPublishAt + PUBLISH_INTERVAL_MS));
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
    if (this.sql.exec("SELECT 1 FROM orders WHERE enqueued_at IS NULL LIMIT 1").toArray().length)
      candidates.push(Date.now() + OUTBOX_RESEND_MS);
    const oldestCheckout = this.sql
      .exec<{ t: number | null }>("SELECT min(checkout_at) AS t FROM holds WHERE status = 'checking_out'")
      .one().t;
    if (oldestCheckout !== null) candidates.push(oldestCheckout + CHECKOUT_TIMEOUT_MS);
    if (this.sql.exec("SELECT 1 FROM refunds WHERE status = 'pending' LIMIT 1").toArray().length) candidates.push(Date.now() + 30_000);
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
    } catch (err) {
      this.dirty = true;
      log.error("inventory publish failed", { inventory: inventoryName(cfg), error: String(err) });
    }
  }
}

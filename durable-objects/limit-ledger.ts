import { DurableObject } from "cloudflare:workers";
import { CleanupAlarm } from "../lib/cleanup-alarm";
import { GroupCommit } from "../lib/group-commit";
import type { Reservation, ReserveAnswer } from "../lib/holds";
import { metric } from "../lib/metric-catalog";
import { fail, ok } from "../lib/problem";

/** A place a buyer holds or bought, as the ledger counts it. */
export type LedgerState = "held" | "checking_out" | "sold" | "released";

/**
 * A hold's state as its Inventory DO settles it into the ledger. `version` grows with every change the
 * DO makes, so a settlement that arrives after a newer one changes nothing.
 */
export interface LedgerSettlement {
  userId: string;
  /** The hold's id. */
  holdKey: string;
  quantity: number;
  state: LedgerState;
  /** The hold's expiry (epoch ms): a `held` reservation counts until then (+ slack). */
  expiresAt: number;
  version: number;
}

/** A reservation that was never confirmed or released lapses this long after its hold would have expired. */
export const RESERVATION_SLACK_MS = 5_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS reservations (
  hold_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, quantity INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('held','checking_out','sold','released')), expires_at INTEGER,
  version INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS reservations_user ON reservations(user_id, state);
`;

/**
 * LimitLedger: the per-customer limit of one event, for the buyers of one bucket (lib/holds.ts
 * `limitStub`: `lim:<event>:<hash(user) mod buckets>`). Every buyer of an event belongs to exactly
 * one bucket, so every decision about one buyer's places in that event is serialized here, across the
 * event's sections, GA shards and the buyer's sessions: a hold first reserves its quantity, and the
 * reservation follows the hold (checkout, sold, released) as the owning Inventory DO settles it; a
 * reservation whose hold call never finished lapses by itself after the hold's lifetime.
 *
 * Many buyers share a bucket so that their reservations, arriving together at a sale's opening, travel in
 * one call per Inventory DO and share one storage commit ({@link GroupCommit}); a ledger per buyer would
 * take a call and a commit per hold.
 */
export class LimitLedger extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly cleanup: CleanupAlarm;
  private readonly group = new GroupCommit((n) => metric.groupCommitSize.observe({ object: "limit_ledger" }, n));

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.cleanup = new CleanupAlarm(ctx.storage);
    this.sql.exec(SCHEMA);
  }

  /**
   * Reserves `quantity` places for `userId`'s hold `holdId` if the buyer stays within `limit`. Counts places
   * sold, in checkout, and held (unexpired). Re-reserving the same hold id is a no-op.
   */
  async reserve(userId: string, holdId: string, quantity: number, limit: number, expiresAt: number): Promise<ReserveAnswer> {
    return (await this.reserveMany([{ userId, holdId, quantity, limit, expiresAt }]))[0] as ReserveAnswer;
  }

  /**
   * {@link reserve} for the holds an Inventory DO gathered (its `reserveAndHold`): one answer each, in order.
   * Calls from several Inventory DOs that arrive together share one commit.
   */
  reserveMany(asks: Reservation[]): Promise<ReserveAnswer[]> {
    return this.group.run(() => asks.map((a) => this.reserveOne(a)), asks.length);
  }

  private reserveOne({ userId, holdId, quantity, limit, expiresAt }: Reservation): ReserveAnswer {
    const now = Date.now();
    if (this.sql.exec("SELECT 1 FROM reservations WHERE hold_id = ?", holdId).toArray().length)
      return ok({ used: this.used(userId, now), limit });
    const used = this.used(userId, now);
    if (used + quantity > limit)
      return fail("limit_exceeded", `This event allows ${limit} places per customer; you have ${used} held or bought.`);
    this.sql.exec(
      "INSERT INTO reservations (hold_id, user_id, quantity, state, expires_at) VALUES (?, ?, ?, 'held', ?)",
      holdId,
      userId,
      quantity,
      expiresAt + RESERVATION_SLACK_MS,
    );
    this.cleanup.ensure(now);
    return ok({ used: used + quantity, limit });
  }

  /**
   * The owning Inventory DO's word on its holds (all it has for this ledger, in one call): each reservation
   * takes its hold's state (and, when held, its expiry) unless a newer settlement was applied already, and
   * is created if it lapsed meanwhile. Calls that arrive together share one commit.
   */
  settleMany(settlements: LedgerSettlement[]): Promise<void> {
    return this.group.run(() => {
      for (const s of settlements) this.settleOne(s);
      this.cleanup.ensure(Date.now());
    }, settlements.length);
  }

  private settleOne(s: LedgerSettlement): void {
    this.sql.exec(
      `INSERT INTO reservations (hold_id, user_id, quantity, state, expires_at, version) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (hold_id) DO UPDATE SET state = excluded.state, quantity = excluded.quantity,
           expires_at = CASE WHEN excluded.state = 'held' THEN excluded.expires_at ELSE reservations.expires_at END,
           version = excluded.version
         WHERE reservations.version < excluded.version`,
      s.holdKey,
      s.userId,
      s.quantity,
      s.state,
      s.expiresAt + RESERVATION_SLACK_MS,
      s.version,
    );
  }

  /** Moves a reservation along with its hold. `expiresAt` applies to `held` (e.g. after a failed checkout). */
  setState(holdId: string, state: LedgerState, expiresAt?: number): void {
    if (state === "held" && expiresAt !== undefined)
      this.sql.exec("UPDATE reservations SET state = ?, expires_at = ? WHERE hold_id = ?", state, expiresAt + RESERVATION_SLACK_MS, holdId);
    else this.sql.exec("UPDATE reservations SET state = ? WHERE hold_id = ?", state, holdId);
  }

  /** Places `userId` holds or bought in this ledger's event. */
  usage(userId: string): number {
    return this.used(userId, Date.now());
  }

  /** Deletes lapsed and released reservations. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.sql.exec("DELETE FROM reservations WHERE state IN ('held','released') AND expires_at <= ?", now);
    const pending = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM reservations WHERE state IN ('held','released')").one().n;
    await this.cleanup.ranWith(pending, now);
  }

  private used(userId: string, now: number): number {
    return (
      this.sql
        .exec<{ n: number | null }>(
          "SELECT sum(quantity) AS n FROM reservations WHERE user_id = ? AND (state IN ('sold','checking_out') OR (state = 'held' AND expires_at > ?))",
          userId,
          now,
        )
        .one().n ?? 0
    );
  }
}

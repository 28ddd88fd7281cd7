import { DurableObject } from "cloudflare:workers";
import { fail, type Outcome, ok } from "../lib/problem";

/** A place a buyer holds or bought, as the ledger counts it. */
export type LedgerState = "held" | "checking_out" | "sold" | "released";

/**
 * A hold's state as its Inventory DO settles it into the ledger. `version` grows with every change the
 * DO makes, so a settlement that arrives after a newer one changes nothing.
 */
export interface LedgerSettlement {
  /** The reservation key (the hold id's random part, see `reservationKey`). */
  holdKey: string;
  eventId: string;
  quantity: number;
  state: LedgerState;
  /** The hold's expiry (epoch ms): a `held` reservation counts until then (+ slack). */
  expiresAt: number;
  version: number;
}

/** What `beginIdempotent` found for a key. */
export type IdempotencyBegin =
  | { kind: "new" }
  | { kind: "replay"; status: number; body: string; contentType: string; headers: [string, string][] }
  | { kind: "in_flight" }
  | { kind: "mismatch" };

/** An in-flight idempotent request older than this is presumed dead (its isolate crashed) and may be retried. */
export const IDEMPOTENCY_IN_FLIGHT_TTL_MS = 60_000;
/** Completed idempotent responses are kept this long. */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
/** A reservation that was never confirmed or released lapses this long after its hold would have expired. */
export const RESERVATION_SLACK_MS = 5_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS reservations (
  hold_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, quantity INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('held','checking_out','sold','released')), expires_at INTEGER,
  version INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS reservations_event ON reservations(event_id, state);
CREATE TABLE IF NOT EXISTS idempotency (
  key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('in_flight','done')),
  status INTEGER, body TEXT, content_type TEXT, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pre_queue (event_id TEXT PRIMARY KEY, ticket TEXT NOT NULL, expires_at INTEGER NOT NULL);
`;

/** Columns added after the first schema, each applied once when missing. */
const ADDED_COLUMNS: { table: string; column: string; ddl: string }[] = [
  // Response headers replayed with the stored answer (JSON pairs, e.g. Location).
  { table: "idempotency", column: "headers", ddl: "ALTER TABLE idempotency ADD COLUMN headers TEXT" },
  // Version of the Inventory DO's last settlement of a reservation (settle()).
  { table: "reservations", column: "version", ddl: "ALTER TABLE reservations ADD COLUMN version INTEGER NOT NULL DEFAULT 0" },
];

/**
 * CustomerLedger: one per buyer (`idFromName(userId)`), so every decision about one buyer is serialized.
 *
 * Responsibilities:
 * - the per-customer limit of an event across its sections, GA shards and the buyer's sessions: a hold
 *   first reserves its quantity here, and the reservation follows the hold (checkout, sold, released);
 *   a reservation whose hold call never finished lapses by itself after the hold's lifetime;
 * - idempotency records of the buyer's unsafe requests (`Idempotency-Key`): in flight, done with the
 *   response to replay, or a different request under the same key;
 * - the buyer's one pre-sale waiting-room ticket per event, so joining again before the opening returns
 *   the same place instead of another draw in the shuffle.
 */
export class CustomerLedger extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
    for (const { table, column, ddl } of ADDED_COLUMNS)
      if (
        !this.sql
          .exec<{ name: string }>(`PRAGMA table_info(${table})`)
          .toArray()
          .some((c) => c.name === column)
      )
        this.sql.exec(ddl);
  }

  /**
   * Reserves `quantity` places of `eventId` for a hold if the buyer stays within `limit`. Counts places
   * sold, in checkout, and held (unexpired). Re-reserving the same hold id is a no-op.
   */
  reserve(eventId: string, holdId: string, quantity: number, limit: number, expiresAt: number): Outcome<{ used: number; limit: number }> {
    const now = Date.now();
    if (this.sql.exec("SELECT 1 FROM reservations WHERE hold_id = ?", holdId).toArray().length)
      return ok({ used: this.used(eventId, now), limit });
    const used = this.used(eventId, now);
    if (used + quantity > limit)
      return fail("limit_exceeded", `This event allows ${limit} places per customer; you have ${used} held or bought.`);
    this.sql.exec(
      "INSERT INTO reservations (hold_id, event_id, quantity, state, expires_at) VALUES (?, ?, ?, 'held', ?)",
      holdId,
      eventId,
      quantity,
      expiresAt + RESERVATION_SLACK_MS,
    );
    this.scheduleCleanup(now);
    return ok({ used: used + quantity, limit });
  }

  /**
   * The owning Inventory DO's word on a hold: the reservation takes the hold's state (and, when held, its
   * expiry) unless a newer settlement was applied already. Creates the reservation if it lapsed meanwhile.
   */
  settle(s: LedgerSettlement): void {
    const expiresAt = s.expiresAt + RESERVATION_SLACK_MS;
    this.sql.exec(
      `INSERT INTO reservations (hold_id, event_id, quantity, state, expires_at, version) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (hold_id) DO UPDATE SET state = excluded.state, quantity = excluded.quantity,
         expires_at = CASE WHEN excluded.state = 'held' THEN excluded.expires_at ELSE reservations.expires_at END,
         version = excluded.version
       WHERE reservations.version < excluded.version`,
      s.holdKey,
      s.eventId,
      s.quantity,
      s.state,
      expiresAt,
      s.version,
    );
    this.scheduleCleanup(Date.now());
  }

  /** Moves a reservation along with its hold. `expiresAt` applies to `held` (e.g. after a failed checkout). */
  setState(holdId: string, state: LedgerState, expiresAt?: number): void {
    if (state === "held" && expiresAt !== undefined)
      this.sql.exec("UPDATE reservations SET state = ?, expires_at = ? WHERE hold_id = ?", state, expiresAt + RESERVATION_SLACK_MS, holdId);
    else this.sql.exec("UPDATE reservations SET state = ? WHERE hold_id = ?", state, holdId);
  }

  /** Places the buyer holds or bought for an event. */
  usage(eventId: string): number {
    return this.used(eventId, Date.now());
  }

  /**
   * Starts an idempotent request. `new`: go ahead (the key is now in flight); `replay`: answer with the
   * stored response; `in_flight`: the first request is still running (409); `mismatch`: the key was
   * used with another request (422). A key whose request failed (5xx) keeps its fingerprint: the same
   * request may run again under it, another one is a mismatch.
   */
  beginIdempotent(key: string, fingerprint: string): IdempotencyBegin {
    const now = Date.now();
    const row = this.sql
      .exec<{
        fingerprint: string;
        state: string;
        status: number | null;
        body: string | null;
        content_type: string | null;
        headers: string | null;
        created_at: number;
      }>("SELECT * FROM idempotency WHERE key = ?", key)
      .toArray()[0];
    if (row && row.created_at > now - IDEMPOTENCY_TTL_MS) {
      if (row.fingerprint !== fingerprint) return { kind: "mismatch" };
      if (row.state === "done")
        return {
          kind: "replay",
          status: row.status ?? 200,
          body: row.body ?? "",
          contentType: row.content_type ?? "application/json",
          headers: row.headers ? (JSON.parse(row.headers) as [string, string][]) : [],
        };
      // In flight with no status: the first request is running (or died less than the TTL ago). With a
      // status: it failed with that 5xx and may be retried.
      if (row.status === null && row.created_at > now - IDEMPOTENCY_IN_FLIGHT_TTL_MS) return { kind: "in_flight" };
    }
    this.sql.exec(
      "INSERT OR REPLACE INTO idempotency (key, fingerprint, state, created_at) VALUES (?, ?, 'in_flight', ?)",
      key,
      fingerprint,
      now,
    );
    this.scheduleCleanup(now);
    return { kind: "new" };
  }

  /** Stores the response of an idempotent request for replay, with the headers to replay (e.g. Location). */
  completeIdempotent(key: string, status: number, body: string, contentType: string, headers: [string, string][] = []): void {
    this.sql.exec(
      "UPDATE idempotency SET state = 'done', status = ?, body = ?, content_type = ?, headers = ? WHERE key = ?",
      status,
      body,
      contentType,
      JSON.stringify(headers),
      key,
    );
  }

  /**
   * Marks an in-flight key as failed with `status` (a 5xx, or 500 for an exception): the same request may
   * be retried under the key; its fingerprint stays, so another request under it is still a mismatch.
   */
  abandonIdempotent(key: string, status = 500): void {
    this.sql.exec("UPDATE idempotency SET status = ? WHERE key = ? AND state = 'in_flight'", status, key);
  }

  /** The buyer's pre-sale ticket for `eventId`, if one is kept and not expired. */
  preQueueTicket(eventId: string): string | null {
    return (
      this.sql
        .exec<{ ticket: string }>("SELECT ticket FROM pre_queue WHERE event_id = ? AND expires_at > ?", eventId, Date.now())
        .toArray()[0]?.ticket ?? null
    );
  }

  /**
   * Keeps `ticket` as the buyer's pre-sale ticket for `eventId` unless one is kept already, and returns the
   * one kept: of two joins racing from two isolates, both answer the first ticket stored.
   */
  claimPreQueueTicket(eventId: string, ticket: string, expiresAt: number): string {
    const now = Date.now();
    this.sql.exec("DELETE FROM pre_queue WHERE event_id = ? AND expires_at <= ?", eventId, now);
    this.sql.exec("INSERT OR IGNORE INTO pre_queue (event_id, ticket, expires_at) VALUES (?, ?, ?)", eventId, ticket, expiresAt);
    this.scheduleCleanup(now);
    return this.sql.exec<{ ticket: string }>("SELECT ticket FROM pre_queue WHERE event_id = ?", eventId).one().ticket;
  }

  /** Deletes lapsed reservations and old idempotency records. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.sql.exec("DELETE FROM reservations WHERE state IN ('held','released') AND expires_at <= ?", now);
    this.sql.exec("DELETE FROM idempotency WHERE created_at <= ?", now - IDEMPOTENCY_TTL_MS);
    this.sql.exec("DELETE FROM pre_queue WHERE expires_at <= ?", now);
    const pending = this.sql
      .exec<{ n: number }>(
        "SELECT (SELECT count(*) FROM reservations WHERE state IN ('held','released')) + (SELECT count(*) FROM idempotency) + (SELECT count(*) FROM pre_queue) AS n",
      )
      .one().n;
    this.cleanupScheduled = pending > 0;
    if (pending > 0) await this.ctx.storage.setAlarm(now + 3_600_000);
  }

  private used(eventId: string, now: number): number {
    return (
      this.sql
        .exec<{ n: number | null }>(
          "SELECT sum(quantity) AS n FROM reservations WHERE event_id = ? AND (state IN ('sold','checking_out') OR (state = 'held' AND expires_at > ?))",
          eventId,
          now,
        )
        .one().n ?? 0
    );
  }

  /** Ensures a cleanup alarm exists (remembered in memory, so the hot path does not read storage). */
  private scheduleCleanup(now: number): void {
    if (this.cleanupScheduled) return;
    this.cleanupScheduled = true;
    void this.ctx.storage.getAlarm().then((at) => {
      if (at === null) return this.ctx.storage.setAlarm(now + 3_600_000);
    });
  }
  private cleanupScheduled = false;
}

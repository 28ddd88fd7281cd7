import { DurableObject } from "cloudflare:workers";
import { CleanupAlarm } from "../lib/cleanup-alarm";

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

const SCHEMA = `
CREATE TABLE IF NOT EXISTS idempotency (
  key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('in_flight','done')),
  status INTEGER, body TEXT, content_type TEXT, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pre_queue (event_id TEXT PRIMARY KEY, ticket TEXT NOT NULL, expires_at INTEGER NOT NULL);
`;

/** Columns added after the first schema, each applied once when missing. */
const ADDED_COLUMNS: { table: string; column: string; ddl: string }[] = [
  // Response headers replayed with the stored answer (JSON pairs, e.g. Location).
  { table: "idempotency", column: "headers", ddl: "ALTER TABLE idempotency ADD COLUMN headers TEXT" },
];

/**
 * CustomerLedger: one per buyer (`idFromName(userId)`), so every decision about one buyer's requests is
 * serialized. (The per-customer limit is the event's LimitLedger's: durable-objects/limit-ledger.ts.)
 *
 * Responsibilities:
 * - idempotency records of the buyer's unsafe requests (`Idempotency-Key`): in flight, done with the
 *   response to replay, or a different request under the same key;
 * - the buyer's one pre-sale waiting-room ticket per event, so joining again before the opening returns
 *   the same place instead of another draw in the shuffle.
 */
export class CustomerLedger extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly cleanup: CleanupAlarm;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.cleanup = new CleanupAlarm(ctx.storage);
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
    this.cleanup.ensure(now);
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
    this.cleanup.ensure(now);
    return this.sql.exec<{ ticket: string }>("SELECT ticket FROM pre_queue WHERE event_id = ?", eventId).one().ticket;
  }

  /** Deletes old idempotency records and lapsed pre-sale tickets. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.sql.exec("DELETE FROM idempotency WHERE created_at <= ?", now - IDEMPOTENCY_TTL_MS);
    this.sql.exec("DELETE FROM pre_queue WHERE expires_at <= ?", now);
    const pending = this.sql
      .exec<{ n: number }>("SELECT (SELECT count(*) FROM idempotency) + (SELECT count(*) FROM pre_queue) AS n")
      .one().n;
    await this.cleanup.ranWith(pending, now);
  }
}

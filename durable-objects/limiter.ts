import { DurableObject } from "cloudflare:workers";
import { gcra, type RateLimitDecision, type RateLimitPolicy } from "../lib/rate-limit";

/** Dirty TATs are written to SQLite at most this often (ms). */
export const FLUSH_INTERVAL_MS = 1_000;

/**
 * Limiter: holds the GCRA state (one theoretical arrival time per key) of many keys. The edge spreads
 * keys over {@link LIMITER_BUCKETS} objects by hash, so no single object is hot.
 *
 * State lives in memory and is written to SQLite at most once a second (alarm), not on every check:
 * a check costs no storage write, and an eviction loses at most a second of history — a limiter may be
 * briefly lenient after a restart, never stricter. Keys idle past their reset are purged.
 */
export class Limiter extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly tats = new Map<string, number>();
  private readonly dirty = new Set<string>();
  /** When the alarm is set for (null: not set). */
  private alarmAt: number | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS tats (key TEXT PRIMARY KEY, tat INTEGER NOT NULL)");
    const now = Date.now();
    for (const r of this.sql.exec<{ key: string; tat: number }>("SELECT key, tat FROM tats WHERE tat > ?", now).toArray())
      this.tats.set(r.key, r.tat);
  }

  /** Checks one request (or `cost` requests) of `key` against `policy`; records it when allowed. */
  check(key: string, policy: RateLimitPolicy, cost = 1): RateLimitDecision {
    const now = Date.now();
    const { decision, tat } = gcra(policy).check(this.tats.get(key), now, cost);
    if (decision.allowed) {
      this.tats.set(key, tat);
      this.dirty.add(key);
      if (this.alarmAt === null || this.alarmAt > now + FLUSH_INTERVAL_MS) {
        this.alarmAt = now + FLUSH_INTERVAL_MS;
        void this.ctx.storage.setAlarm(this.alarmAt);
      }
    }
    return decision;
  }

  /** Writes dirty keys, purges expired ones. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.alarmAt = null;
    for (const key of this.dirty) {
      const tat = this.tats.get(key);
      if (tat !== undefined)
        this.sql.exec("INSERT INTO tats (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET tat = excluded.tat", key, tat);
    }
    this.dirty.clear();
    for (const [key, tat] of this.tats) if (tat <= now) this.tats.delete(key);
    this.sql.exec("DELETE FROM tats WHERE tat <= ?", now);
    if (this.tats.size && this.alarmAt === null) {
      this.alarmAt = now + 60_000;
      await this.ctx.storage.setAlarm(this.alarmAt);
    }
  }
}

/** Objects the key space is spread over. */
export const LIMITER_BUCKETS = 256;

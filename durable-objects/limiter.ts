import { DurableObject } from "cloudflare:workers";
import { type Gcra, gcra, type RateLimitDecision, type RateLimitPolicy } from "../lib/rate-limit";

/** Changed TATs are written to SQLite at most this long after the change (ms). */
export const FLUSH_INTERVAL_MS = 1_000;
/** Rested keys (TAT in the past) are purged from memory and SQLite this often while any remain (ms). */
export const PURGE_INTERVAL_MS = 60_000;

const SCHEMA = `
DROP TABLE IF EXISTS tats;
CREATE TABLE IF NOT EXISTS gcra (key TEXT PRIMARY KEY, tat_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS gcra_tat ON gcra(tat_us);
`;

/**
 * Limiter: the GCRA state of many rate-limit keys (one theoretical arrival time each). The edge spreads
 * keys over `LIMITER_BUCKETS` objects by hash (`limiterObjectName`), so no object is hot and every check
 * is one RPC to the object owning its key.
 *
 * Responsibilities:
 * - decide checks (`check`) atomically per key: calls are serialized by the object, and a check never
 *   awaits, so concurrent requests for one key pass exactly as many times as the policy allows;
 * - keep TATs in memory (read through from SQLite on first use) and write the changed ones to SQLite
 *   within {@link FLUSH_INTERVAL_MS} (alarm), so a check costs no storage write and an eviction or
 *   restart forgets at most the last second — the limiter may be briefly lenient, never stricter;
 * - purge rested keys (TAT in the past: equivalent to no state) from memory and SQLite (alarm).
 */
export class Limiter extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly tats = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private readonly limiters = new Map<string, Gcra>();
  /** When the alarm is set for; null when none is. */
  private alarmAt: number | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
    void ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  /**
   * Decides `cost` requests (default 1; 0 only looks) of `key` under `policy` at `nowMs` (default: this
   * object's clock) and records them when allowed.
   */
  check(key: string, policy: RateLimitPolicy, nowMs?: number, cost = 1): RateLimitDecision {
    const now = nowMs ?? Date.now();
    const step = this.limiter(policy).check(this.tat(key), now, cost);
    if (step.changed && step.tat !== undefined) {
      this.tats.set(key, step.tat);
      this.dirty.add(key);
      this.schedule(now + FLUSH_INTERVAL_MS);
    }
    return step.decision;
  }

  /** Forgets `key` (support: unblock a client). True when it had state. */
  reset(key: string): boolean {
    const had = this.tat(key) !== undefined;
    this.tats.delete(key);
    this.dirty.delete(key);
    this.sql.exec("DELETE FROM gcra WHERE key = ?", key);
    return had;
  }

  /** Keys with state in memory and rows in SQLite (tests, diagnostics). */
  stats(): { inMemory: number; stored: number; dirty: number } {
    const stored = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM gcra").one().n;
    return { inMemory: this.tats.size, stored, dirty: this.dirty.size };
  }

  /** Writes changed TATs, then purges rested keys; re-arms while any state remains. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.alarmAt = null;
    this.flush();
    const nowUs = now * 1_000;
    for (const [key, tat] of this.tats) if (tat <= nowUs) this.tats.delete(key);
    this.sql.exec("DELETE FROM gcra WHERE tat_us <= ?", nowUs);
    const left = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM gcra").one().n;
    if (left > 0 || this.tats.size > 0) this.schedule(now + PURGE_INTERVAL_MS);
  }

  private flush(): void {
    for (const key of this.dirty) {
      const tat = this.tats.get(key);
      if (tat !== undefined)
        this.sql.exec("INSERT INTO gcra (key, tat_us) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET tat_us = excluded.tat_us", key, tat);
    }
    this.dirty.clear();
  }

  /** The TAT of `key`: from memory, else from SQLite (then kept in memory). */
  private tat(key: string): number | undefined {
    const cached = this.tats.get(key);
    if (cached !== undefined) return cached;
    const row = this.sql.exec<{ tat_us: number }>("SELECT tat_us FROM gcra WHERE key = ?", key).toArray()[0];
    if (row) this.tats.set(key, row.tat_us);
    return row?.tat_us;
  }

  /** One GCRA value per distinct policy (policies come from a handful of route configs). */
  private limiter(policy: RateLimitPolicy): Gcra {
    const id = `${policy.limit}/${policy.periodSeconds}/${policy.burst ?? ""}`;
    let g = this.limiters.get(id);
    if (!g) {
      g = gcra(policy);
      if (this.limiters.size >= 64) this.limiters.clear();
      this.limiters.set(id, g);
    }
    return g;
  }

  /** Sets the alarm for `at` unless one is due sooner. */
  private schedule(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }
}

import { fail, type Outcome, ok } from "../lib/problem";

/**
 * Moving unsold capacity between the shards of a general-admission section (inventory.ts keeps thin RPC
 * methods that call these). Sharding splits a section's places; near the end of a sale the places left can
 * be scattered one or two per shard, so a buyer asking for 4 would find no shard with 4 although the
 * section has them. The edge then moves places to one shard and holds there: every place stays sellable,
 * and every order keeps all its places in one Inventory DO (refunds, check-in and reconciliation stay
 * local).
 *
 * A move is exactly once, whatever fails between its steps:
 * 1. the donor lends: in one transaction its capacity goes down by places that were available (never held
 *    or sold) and a `capacity_out` row records the move;
 * 2. the receiver takes it: `capacity_in` is keyed by the move's id, so a second delivery adds nothing;
 * 3. the donor forgets the move once delivered. Until then its alarm delivers it again (a crash of the edge
 *    between 1 and 2 leaves the places on their way, never lost and never counted twice).
 * While a move is on its way its places are in neither shard: the availability snapshot counts a section's
 * available places as its capacity less held and sold, so they show as available (which they are about to
 * be) and sold + held + available = capacity holds for the section at every moment.
 */

export const CAPACITY_SCHEMA = `
CREATE TABLE IF NOT EXISTS capacity_out (
  transfer_id TEXT PRIMARY KEY, to_shard INTEGER NOT NULL, quantity INTEGER NOT NULL, created_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS capacity_in (transfer_id TEXT PRIMARY KEY, from_shard INTEGER NOT NULL, quantity INTEGER NOT NULL, at INTEGER NOT NULL);
`;

/** A lent move not confirmed delivered this long after is delivered again by the donor's alarm (ms). */
export const REDELIVER_AFTER_MS = 5_000;

/** A move on its way out of a donor. */
export interface CapacityMove {
  transferId: string;
  toShard: number;
  quantity: number;
}

/**
 * Lends up to `most` available places of this shard to shard `toShard` (at least one, or a failure that
 * says the shard has none to spare). One transaction: capacity down, the move recorded.
 */
export function lend(
  sql: SqlStorage,
  storage: DurableObjectStorage,
  available: number,
  move: { transferId: string; toShard: number; most: number },
  now: number,
): Outcome<{ lent: number }> {
  if (!Number.isInteger(move.most) || move.most < 1) return fail("validation_failed", "Lend at least one place.");
  const known = sql.exec<{ quantity: number }>("SELECT quantity FROM capacity_out WHERE transfer_id = ?", move.transferId).toArray()[0];
  // The same move asked again (an edge retry): it was lent already.
  if (known) return ok({ lent: known.quantity });
  if (available < 1) return fail("sold_out", "No places to spare here.");
  const lent = Math.min(move.most, available);
  storage.transactionSync(() => {
    sql.exec("UPDATE counters SET capacity = capacity - ? WHERE id = 0", lent);
    sql.exec(
      "INSERT INTO capacity_out (transfer_id, to_shard, quantity, created_at) VALUES (?, ?, ?, ?)",
      move.transferId,
      move.toShard,
      lent,
      now,
    );
  });
  return ok({ lent });
}

/** Takes a move into this shard's capacity. Idempotent per move: returns whether this call added it. */
export function receive(
  sql: SqlStorage,
  storage: DurableObjectStorage,
  move: { transferId: string; fromShard: number; quantity: number },
  now: number,
): boolean {
  if (sql.exec("SELECT 1 FROM capacity_in WHERE transfer_id = ?", move.transferId).toArray().length) return false;
  storage.transactionSync(() => {
    sql.exec(
      "INSERT INTO capacity_in (transfer_id, from_shard, quantity, at) VALUES (?, ?, ?, ?)",
      move.transferId,
      move.fromShard,
      move.quantity,
      now,
    );
    sql.exec("UPDATE counters SET capacity = capacity + ? WHERE id = 0", move.quantity);
  });
  return true;
}

/** Forgets moves the receiver has (after a delivery). */
export function delivered(sql: SqlStorage, transferIds: string[]): void {
  for (const id of transferIds) sql.exec("DELETE FROM capacity_out WHERE transfer_id = ?", id);
}

/** Moves lent at least {@link REDELIVER_AFTER_MS} ago and not known delivered. */
export function undelivered(sql: SqlStorage, now: number): CapacityMove[] {
  return sql
    .exec<{ transfer_id: string; to_shard: number; quantity: number }>(
      "SELECT transfer_id, to_shard, quantity FROM capacity_out WHERE created_at <= ? ORDER BY created_at LIMIT 50",
      now - REDELIVER_AFTER_MS,
    )
    .toArray()
    .map((r) => ({ transferId: r.transfer_id, toShard: r.to_shard, quantity: r.quantity }));
}

/** When the alarm should next deliver a move (null: none on its way). */
export function nextRedeliveryAt(sql: SqlStorage): number | null {
  const t = sql.exec<{ t: number | null }>("SELECT min(created_at) AS t FROM capacity_out").one().t;
  return t === null ? null : t + REDELIVER_AFTER_MS;
}

/** Counts a failed re-delivery (kept for the next alarm). */
export function noteAttempt(sql: SqlStorage, transferId: string): void {
  sql.exec("UPDATE capacity_out SET attempts = attempts + 1 WHERE transfer_id = ?", transferId);
}

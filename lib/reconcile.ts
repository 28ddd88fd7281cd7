import type { EventDoc } from "./event-schema";
import { type InventoryNamespace, inventoryStub } from "./holds";
import type { OrderStore } from "./order-rows";

/**
 * Reconciliation (invariant 3): every order an Inventory DO sold must be in exactly one order shard once
 * the queues have drained. Orders younger than `graceMs` may still be in flight and are not judged.
 */

/** What one reconciliation of an event found. */
export interface ReconciliationResult {
  eventId: string;
  soldInInventory: number;
  storedInShards: number;
  /** Sold in a DO, in no shard (after the grace period). */
  missing: string[];
  /** In a shard, sold by no DO. */
  extra: string[];
  /** In more than one shard (or more than once). */
  duplicated: string[];
}

/** Compares the sales of every Inventory DO of `event` with the orders in every shard. */
export async function reconcileEvent(
  deps: { inventory: InventoryNamespace; stores: OrderStore[] },
  event: Pick<EventDoc, "id" | "sections">,
  opts: { graceMs?: number; now?: number } = {},
): Promise<ReconciliationResult> {
  const now = opts.now ?? Date.now();
  const grace = opts.graceMs ?? 5 * 60_000;
  const sold = new Map<string, number>();
  for (const section of event.sections) {
    const shards = section.kind === "ga" ? (section.shards ?? 1) : 1;
    for (let shard = 0; shard < shards; shard++) {
      const records = await inventoryStub(deps.inventory, { eventId: event.id, sectionId: section.id, shard }).orderRecords();
      for (const r of records) sold.set(r.id, r.createdAt);
    }
  }
  const stored = new Map<string, number>();
  for (const store of deps.stores)
    for (const r of await store.orderIdsForEvent(event.id)) stored.set(r.id, (stored.get(r.id) ?? 0) + r.rows);
  const missing = [...sold.entries()].filter(([id, at]) => !stored.has(id) && at <= now - grace).map(([id]) => id);
  const extra = [...stored.keys()].filter((id) => !sold.has(id));
  const duplicated = [...stored.entries()].filter(([, n]) => n > 1).map(([id]) => id);
  return {
    eventId: event.id,
    soldInInventory: sold.size,
    storedInShards: stored.size,
    missing: missing.sort(),
    extra: extra.sort(),
    duplicated: duplicated.sort(),
  };
}

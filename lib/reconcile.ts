import type { EventDoc } from "./event-schema";
import { type InventoryLocation, parseLocatedId } from "./hold-id";
import { type InventoryNamespace, inventoryStub, isInventoryOf } from "./holds";
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
  /** Inventory DOs asked for their sales. */
  objectsAsked: number;
}

/** Every Inventory DO of an event: one per seated section, one per GA shard. */
function inventoryLocations(event: Pick<EventDoc, "id" | "sections">): InventoryLocation[] {
  return event.sections.flatMap((section) =>
    Array.from({ length: section.kind === "ga" ? (section.shards ?? 1) : 1 }, (_, shard) => ({
      eventId: event.id,
      sectionId: section.id,
      shard,
    })),
  );
}

/**
 * Compares the sales of the Inventory DOs of `event` with the orders in every shard. By default every DO
 * of the event is asked; `sold` narrows that to the DOs known to have sold (those that reported sales to the
 * event's WaitingRoom): the owners of orders found in the shards are always asked too, so a stored order is
 * never called "extra" because its DO was skipped.
 */
export async function reconcileEvent(
  deps: { inventory: InventoryNamespace; stores: OrderStore[] },
  event: Pick<EventDoc, "id" | "sections">,
  opts: { graceMs?: number; now?: number; sold?: { sectionId: string; shard: number }[] } = {},
): Promise<ReconciliationResult> {
  const now = opts.now ?? Date.now();
  const grace = opts.graceMs ?? 5 * 60_000;
  const stored = new Map<string, number>();
  for (const store of deps.stores)
    for (const r of await store.orderIdsForEvent(event.id)) stored.set(r.id, (stored.get(r.id) ?? 0) + r.rows);

  const locations = new Map<string, InventoryLocation>();
  const add = (loc: InventoryLocation) => {
    if (isInventoryOf(event, loc)) locations.set(`${loc.sectionId}#${loc.shard}`, loc);
  };
  if (opts.sold) for (const l of opts.sold) add({ eventId: event.id, ...l });
  else for (const l of inventoryLocations(event)) add(l);
  for (const id of stored.keys()) {
    const loc = parseLocatedId("ord", id);
    if (loc) add(loc);
  }
  const sold = new Map<string, number>();
  for (const loc of locations.values())
    for (const r of await inventoryStub(deps.inventory, loc).orderRecords()) sold.set(r.id, r.createdAt);

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
    objectsAsked: locations.size,
  };
}

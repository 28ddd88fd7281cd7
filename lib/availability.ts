import type { EventDoc } from "./event-schema";
import { type AvailabilitySnapshot, gaShardCapacity, type InventoryReport, type SectionAvailability } from "./inventory-types";

/**
 * Aggregates the latest report of every Inventory DO of an event into the availability snapshot.
 * A shard that never reported has never held anything, so it counts as fully available.
 */
export function aggregateAvailability(
  event: Pick<EventDoc, "id" | "sections">,
  reports: Iterable<InventoryReport>,
  now = Date.now(),
): AvailabilitySnapshot {
  const latest = new Map<string, InventoryReport>();
  for (const r of reports) {
    const key = `${r.sectionId}#${r.shard}`;
    const prev = latest.get(key);
    if (!prev || prev.at <= r.at) latest.set(key, r);
  }
  const sections: SectionAvailability[] = event.sections.map((s) => {
    const shards = s.kind === "ga" ? (s.shards ?? 1) : 1;
    const agg: SectionAvailability = { id: s.id, capacity: 0, available: 0, held: 0, sold: 0 };
    for (let shard = 0; shard < shards; shard++) {
      const cap = s.kind === "ga" ? gaShardCapacity(s.capacity, shards, shard) : s.capacity;
      const r = latest.get(`${s.id}#${shard}`);
      agg.capacity += cap;
      agg.available += r ? r.available : cap;
      agg.held += r ? r.held : 0;
      agg.sold += r ? r.sold : 0;
    }
    return agg;
  });
  return { eventId: event.id, asOf: new Date(now).toISOString(), sections };
}

import type { EventDoc } from "./event-schema";
import { type AvailabilitySnapshot, gaShardCapacity, type InventoryReport, type SectionAvailability } from "./inventory-types";
import { log } from "./log";
import { metric } from "./metric-catalog";
import { type CachedBody, type CacheLayer, parsedBody, ReadThroughCache } from "./read-cache";

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
      agg.held += r ? r.held : 0;
      agg.sold += r ? r.sold : 0;
    }
    // The section's places less held and sold (not the shards' own available counts added up): places
    // moving between GA shards (durable-objects/inventory-capacity.ts) are in neither shard for a moment,
    // and count as available, so sold + held + available = capacity holds at every moment.
    agg.available = agg.capacity - agg.held - agg.sold;
    return agg;
  });
  return { eventId: event.id, asOf: new Date(now).toISOString(), sections };
}

/** Availability snapshots, one second per isolate, coalesced: the WaitingRoom DO sees O(isolates) reads/s. */
const availabilityCache = new ReadThroughCache({ ttlMs: 1_000, negativeTtlMs: 1_000, maxEntries: 10_000 });

/** What reading a snapshot needs. */
export interface AvailabilityDeps {
  rooms: Env["WAITING_ROOM"];
  waitUntil: (p: Promise<unknown>) => void;
}

/** The event's availability snapshot through the micro-cache (serialized body, ETag, layer). */
export function readAvailability(
  deps: AvailabilityDeps,
  event: Pick<EventDoc, "id" | "sections">,
): Promise<{ value: CachedBody | null; layer: CacheLayer }> {
  return availabilityCache.get({
    key: `availability:${event.id}`,
    cacheUrl: "",
    edgeTtlSeconds: 1,
    waitUntil: deps.waitUntil,
    kv: async () => null,
    origin: async () => {
      metric.waitingRoomDoCalls.inc({ method: "availability" });
      const snapshot = await deps.rooms.get(deps.rooms.idFromName(event.id)).availability({ id: event.id, sections: event.sections });
      return JSON.stringify(snapshot);
    },
  });
}

/** The parsed snapshot (for the hold path's sold-out check); null if it cannot be read right now. */
export async function availabilitySnapshot(
  deps: AvailabilityDeps,
  event: Pick<EventDoc, "id" | "sections">,
): Promise<AvailabilitySnapshot | null> {
  try {
    const { value } = await readAvailability(deps, event);
    if (!value) return null;
    return parsedBody(value, (body) => JSON.parse(body) as AvailabilitySnapshot);
  } catch (err) {
    // The snapshot only short-cuts sold-out answers; without it the Inventory DOs decide.
    log.warn("availability snapshot unavailable", { eventId: event.id, error: String(err) });
    return null;
  }
}

import { DurableObject } from "cloudflare:workers";
import { aggregateAvailability } from "../lib/availability";
import type { EventDoc } from "../lib/event-schema";
import type { AvailabilitySnapshot, InventoryReport } from "../lib/inventory-types";

/** Event fields the room needs. */
export type RoomEvent = Pick<EventDoc, "id" | "sections" | "waitingRoom" | "saleStartsAt">;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS reports (section_id TEXT NOT NULL, shard INTEGER NOT NULL, report TEXT NOT NULL, at INTEGER NOT NULL,
  PRIMARY KEY (section_id, shard));
`;

/**
 * WaitingRoom: one per event (`idFromName(eventId)`), the event's coordinator.
 *
 * Responsibilities:
 * - receives the counts and health each Inventory DO publishes (at most about once a second) and keeps
 *   the latest per section/shard durably;
 * - serves the availability snapshot aggregated from them (the edge reads it through a one-second
 *   micro-cache, so this object sees O(isolates) reads per second, not O(buyers)).
 */
export class WaitingRoom extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly reports = new Map<string, InventoryReport>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
    for (const row of this.sql.exec<{ report: string }>("SELECT report FROM reports").toArray()) {
      const r = JSON.parse(row.report) as InventoryReport;
      this.reports.set(`${r.sectionId}#${r.shard}`, r);
    }
  }

  /** An Inventory DO's latest counts and health. Older reports than the one kept are ignored. */
  async reportInventory(_event: RoomEvent, report: InventoryReport): Promise<void> {
    const key = `${report.sectionId}#${report.shard}`;
    const prev = this.reports.get(key);
    if (prev && prev.at > report.at) return;
    this.reports.set(key, report);
    this.sql.exec(
      "INSERT INTO reports (section_id, shard, report, at) VALUES (?, ?, ?, ?) ON CONFLICT (section_id, shard) DO UPDATE SET report = excluded.report, at = excluded.at",
      report.sectionId,
      report.shard,
      JSON.stringify(report),
      report.at,
    );
  }

  /** Availability per section, from the latest reports (a shard that never reported is fully available). */
  availability(event: Pick<EventDoc, "id" | "sections">): AvailabilitySnapshot {
    return aggregateAvailability(event, this.reports.values());
  }
}

import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import type { Inventory } from "../durable-objects/inventory";
import { inventoryStub } from "../lib/holds";
import type { EventBody } from "./helpers";

/** Counts an Inventory DO keeps, recounted from its tables. */
interface Recount {
  capacity: number;
  /** Capacity moves this GA shard lent and was not told delivered, and the moves it received (inventory-capacity.ts). */
  movesOut: { id: string; quantity: number }[];
  movesIn: string[];
  counters: { held: number; sold: number };
  seatsByStatus: Record<string, number>;
  holdQuantity: { active: number; sold: number };
  seatHolders: number;
}

/** Recounts one Inventory DO from its SQLite tables. */
function recount(eventId: string, sectionId: string, shard: number): Promise<Recount | null> {
  const stub = inventoryStub(env.INVENTORY, { eventId, sectionId, shard });
  return runInDurableObject(stub, (_inst: Inventory, state) => {
    const sql = state.storage.sql;
    const hasCounters = sql.exec("SELECT name FROM sqlite_master WHERE name = 'counters'").toArray().length > 0;
    const c = hasCounters ? sql.exec<{ capacity: number; held: number; sold: number }>("SELECT * FROM counters").toArray()[0] : undefined;
    if (!c) return null;
    const seatsByStatus: Record<string, number> = {};
    for (const r of sql.exec<{ status: string; n: number }>("SELECT status, count(*) AS n FROM seats GROUP BY status").toArray())
      seatsByStatus[r.status] = r.n;
    const q = (status: string) =>
      sql.exec<{ n: number | null }>("SELECT sum(quantity) AS n FROM holds WHERE status IN (" + status + ")").one().n ?? 0;
    const seatHolders = sql.exec<{ n: number }>("SELECT count(DISTINCT hold_id) AS n FROM seats WHERE hold_id IS NOT NULL").one().n;
    // Refunded tickets (void marks) went back on sale: they no longer count as sold.
    const hasMarks = sql.exec("SELECT name FROM sqlite_master WHERE name = 'ticket_marks'").toArray().length > 0;
    const voided = hasMarks ? sql.exec<{ n: number }>("SELECT count(*) AS n FROM ticket_marks WHERE status = 'void'").one().n : 0;
    const hasMoves = sql.exec("SELECT name FROM sqlite_master WHERE name = 'capacity_out'").toArray().length > 0;
    return {
      capacity: c.capacity,
      movesOut: hasMoves
        ? sql
            .exec<{ transfer_id: string; quantity: number }>("SELECT transfer_id, quantity FROM capacity_out")
            .toArray()
            .map((m) => ({ id: m.transfer_id, quantity: m.quantity }))
        : [],
      movesIn: hasMoves
        ? sql
            .exec<{ transfer_id: string }>("SELECT transfer_id FROM capacity_in")
            .toArray()
            .map((m) => m.transfer_id)
        : [],
      counters: { held: c.held, sold: c.sold },
      seatsByStatus,
      holdQuantity: { active: q("'active','checking_out'"), sold: q("'sold'") - voided },
      seatHolders,
    };
  });
}

/**
 * Asserts DESIGN.md invariant 1 for every section (and GA shard) of an event: sold + held + available =
 * capacity, the counters agree with the holds and (seated) with the seats table, and returns the totals.
 */
export async function expectInventoryInvariants(
  event: EventBody,
): Promise<Record<string, { held: number; sold: number; capacity: number }>> {
  const totals: Record<string, { held: number; sold: number; capacity: number }> = {};
  for (const section of event.sections) {
    const shards = section.kind === "ga" ? (section.shards ?? 1) : 1;
    const t = { held: 0, sold: 0, capacity: 0 };
    const movesOut: { id: string; quantity: number }[] = [];
    const movesIn = new Set<string>();
    for (let shard = 0; shard < shards; shard++) {
      const r = await recount(event.id, section.id, shard);
      if (!r) {
        t.capacity +=
          section.kind === "ga" ? Math.floor(section.capacity / shards) + (shard < section.capacity % shards ? 1 : 0) : section.capacity;
        continue;
      }
      expect(r.counters.held, `held counter = active holds in ${section.id}#${shard}`).toBe(r.holdQuantity.active);
      expect(r.counters.sold, `sold counter = sold holds less refunded tickets in ${section.id}#${shard}`).toBe(r.holdQuantity.sold);
      expect(r.counters.held + r.counters.sold).toBeLessThanOrEqual(r.capacity);
      if (section.kind === "seated") {
        expect(r.seatsByStatus.held ?? 0).toBe(r.counters.held);
        expect(r.seatsByStatus.sold ?? 0).toBe(r.counters.sold);
        expect((r.seatsByStatus.available ?? 0) + (r.seatsByStatus.held ?? 0) + (r.seatsByStatus.sold ?? 0)).toBe(r.capacity);
      }
      t.held += r.counters.held;
      t.sold += r.counters.sold;
      t.capacity += r.capacity;
      movesOut.push(...r.movesOut);
      for (const id of r.movesIn) movesIn.add(id);
    }
    // Places lent by one GA shard that no shard has received yet are on their way (the lender's alarm
    // delivers them): counted once, neither lost nor doubled.
    const onTheWay = movesOut.filter((m) => !movesIn.has(m.id)).reduce((n, m) => n + m.quantity, 0);
    expect(t.capacity + onTheWay).toBe(section.capacity);
    totals[section.id] = t;
  }
  return totals;
}

import { randomToken } from "./ids";

/**
 * Hold and order ids carry the location of the Inventory Durable Object that owns them, so a read goes
 * straight to its owner: `hld_<random>.<eventId>.<sectionId>.<shard>`. Clients treat them as opaque;
 * the server validates every part before using it.
 */

const LOCATED = /^(hld|ord)_([0-9a-hjkmnp-tv-z]{20})\.(evt_[0-9a-hjkmnp-tv-z]{8,40})\.([A-Za-z0-9][A-Za-z0-9_-]{0,31})\.(\d{1,2})$/;

/** Where an Inventory DO lives. */
export interface InventoryLocation {
  eventId: string;
  sectionId: string;
  shard: number;
}

/** The Durable Object name of an inventory location. */
export const inventoryName = (loc: InventoryLocation): string => `inv:${loc.eventId}:${loc.sectionId}:${loc.shard}`;

/** A new located id (`hld` or `ord`). */
export const newLocatedId = (prefix: "hld" | "ord", loc: InventoryLocation): string =>
  `${prefix}_${randomToken(20)}.${loc.eventId}.${loc.sectionId}.${loc.shard}`;

/** The location inside a located id, or null when the id is not one the server issued. */
export function parseLocatedId(prefix: "hld" | "ord", id: string): InventoryLocation | null {
  const m = LOCATED.exec(id);
  if (!m || m[1] !== prefix) return null;
  return { eventId: m[3] as string, sectionId: m[4] as string, shard: Number(m[5]) };
}

/** The same random part, re-prefixed: the order id of a hold is derived from it (one order per hold). */
export const orderIdForHold = (holdId: string): string => holdId.replace(/^hld_/, "ord_");

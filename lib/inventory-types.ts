import { z } from "zod";
import type { Outcome } from "./problem";

/**
 * The contract between the edge and the Inventory Durable Objects, and the snapshots they publish.
 * An Inventory DO owns one seated section (shard 0) or one capacity shard of a GA section.
 */

/** What an Inventory DO needs to know about its section; passed on calls so a DO initializes lazily. */
export interface InventoryConfig {
  eventId: string;
  sectionId: string;
  kind: "seated" | "ga";
  /** Shard index (0 for seated) and shard count of the section. */
  shard: number;
  shards: number;
  /** Places this DO owns (seated: all seats of the section; GA: this shard's share). */
  capacity: number;
  rows?: { id: string; seats: number }[];
  price: number;
  currency: string;
  holdSeconds: number;
}

/** Hold states of the API. */
const holdStatus = z.enum(["active", "checking_out", "expired", "released", "sold"]);
export type HoldStatus = z.output<typeof holdStatus>;

/** The API's `hold`: the one schema of the hold document (routes, DO answers and docs derive from it). */
export const holdSchema = z.object({
  id: z.string(),
  eventId: z.string(),
  sectionId: z.string(),
  seats: z.array(z.string()),
  quantity: z.number().int(),
  total: z.number().int(),
  currency: z.string(),
  expiresAt: z.string(),
  status: holdStatus,
  /** Set once sold. */
  orderId: z.string().optional(),
});
export type HoldView = z.output<typeof holdSchema>;

/** Counts of one DO (seated section or GA shard). Invariant: available + held + sold = capacity. */
export interface InventoryCounts {
  capacity: number;
  available: number;
  held: number;
  sold: number;
}

/** Health signals an Inventory DO reports (for the waiting room's adaptive admission rate). */
export interface InventoryHealth {
  /** p95 of hold-transaction latency inside the DO over the last report window, ms. */
  holdLatencyP95Ms: number;
  /** Holds attempted per second over the last window. */
  holdsPerSecond: number;
  /** Requests refused as overloaded in the window. */
  overloads: number;
  /** Active (and checking-out) holds now. */
  activeHolds: number;
}

/** What an Inventory DO publishes about itself, at most about once a second, to its event's WaitingRoom DO. */
export interface InventoryReport extends InventoryCounts {
  sectionId: string;
  shard: number;
  /** Epoch ms when the counts were read. */
  at: number;
  health: InventoryHealth;
}

/** Availability of a section as GET /v1/events/:id/availability shows it. */
export interface SectionAvailability extends InventoryCounts {
  id: string;
}

/** GET /v1/events/:id/availability body. */
export interface AvailabilitySnapshot {
  eventId: string;
  asOf: string;
  sections: SectionAvailability[];
}

/** Places of GA shard `shard` of `shards` for a section of `capacity`: the remainder goes to the first shards. */
export function gaShardCapacity(capacity: number, shards: number, shard: number): number {
  return Math.floor(capacity / shards) + (shard < capacity % shards ? 1 : 0);
}

/** A hold request as the edge sends it. */
export interface HoldRequest {
  holdId: string;
  userId: string;
  /** Named seats (seated sections). */
  seats?: string[];
  /** Number of places (GA; or best-available seats in a seated section). */
  quantity?: number;
  /**
   * The event's per-customer limit: the object reserves the hold's places in the buyer's LimitLedger first
   * (durable-objects/limit-ledger.ts). Without it the hold is not counted against the limit (tests of the
   * object alone).
   */
  limit?: number;
  /** Edge clock when the call was sent: the DO derives its queueing delay from it. */
  sentAt?: number;
  /**
   * The version of the event document the edge read (EventDoc.version). `Inventory.place` holds
   * without any configuration when the object has this version or a newer one; `hold` records it.
   */
  eventVersion?: number;
}

/** `Inventory.place`'s answer when the object needs its configuration (first call, or a newer event version). */
export const NEEDS_SETUP = "needs_setup" as const;

/** `Inventory.place`'s answer: the hold's outcome, or {@link NEEDS_SETUP}. */
export type PlaceAnswer = Outcome<HoldView> | typeof NEEDS_SETUP;

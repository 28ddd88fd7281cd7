import { type AnalyticsEvent, analyticsEvent } from "./analytics-event";
import { type EventDoc, type EventRouting, inventoryObjectCount, type Section } from "./event-schema";
import { type InventoryLocation, newLocatedId, parseLocatedId } from "./hold-id";
import { randomToken } from "./ids";
import {
  gaShardCapacity,
  type HoldRequest,
  type HoldView,
  type InventoryConfig,
  NEEDS_SETUP,
  type SectionAvailability,
} from "./inventory-types";
import { log } from "./log";
import { metric } from "./metric-catalog";
import { ApiError, type Outcome, unwrap } from "./problem";
import { hash32 } from "./signing";

/** The Inventory Durable Objects, as the generated `Env` types them (lib/ never imports the class). */
export type InventoryNamespace = Env["INVENTORY"];
export type InventoryStub = ReturnType<InventoryNamespace["get"]>;
/** The buyers' CustomerLedger Durable Objects (idempotency records, pre-sale tickets). */
export type LedgerNamespace = Env["CUSTOMER_LEDGER"];
/** The events' LimitLedger Durable Objects (the per-customer limit). */
export type LimitNamespace = Env["LIMIT_LEDGER"];
export type LimitStub = ReturnType<LimitNamespace["get"]>;

/**
 * The edge side of holds: choosing the Inventory DO (seated section, or GA shard by buyer hash with
 * fallback), the per-customer limit through the buyer's LimitLedger, and mapping outcomes to errors.
 * Takes narrow dependencies so routes, tests and benchmarks share it.
 */

/** A hold's claim on the per-customer limit, as its Inventory DO asks for it. */
export interface Reservation {
  userId: string;
  /** The hold's id (each shard tried has its own). */
  holdId: string;
  quantity: number;
  /** The event's per-customer limit. */
  limit: number;
  /** The hold's expiry (epoch ms): an unconfirmed reservation lapses after it (+ slack). */
  expiresAt: number;
}

/** The places the buyer uses after a granted reservation, or `limit_exceeded`. */
export type ReserveAnswer = Outcome<{ used: number; limit: number }>;

/** Durable Object namespaces holds need. */
export interface HoldDeps {
  inventory: InventoryNamespace;
  limits: LimitNamespace;
  /** Receives funnel events (hold.created, hold.released); the route queues them in the background. */
  analytics?: (e: AnalyticsEvent) => void;
}

/** What a buyer asks for. */
export interface HoldInput {
  sectionId: string;
  seats?: string[];
  quantity?: number;
}

/** The Inventory DO stub of a location. */
export function inventoryStub(ns: InventoryNamespace, loc: InventoryLocation): InventoryStub {
  return ns.get(ns.idFromName(`inv:${loc.eventId}:${loc.sectionId}:${loc.shard}`));
}

/** The buyer's CustomerLedger stub. */
export const ledgerStub = (ns: LedgerNamespace, userId: string) => ns.get(ns.idFromName(userId));

/**
 * LimitLedger buckets of an event: one per four Inventory DOs, 1 to 64. A bucket serves every hold of its
 * buyers, as an Inventory DO serves every hold of its section or shard, so the ledger scales with the
 * inventory it guards. Derived from the sections alone, which never change, so a buyer's bucket never moves.
 */
export const limitBuckets = (event: { sections: Parameters<typeof inventoryObjectCount>[0] }): number =>
  Math.min(64, Math.max(1, Math.ceil(inventoryObjectCount(event.sections) / 4)));

/** The LimitLedger that keeps `userId`'s places in `event` (the same for every section and shard). */
export function limitStub(ns: LimitNamespace, event: { id: string } & Parameters<typeof limitBuckets>[0], userId: string): LimitStub {
  return limitStubNamed(ns, limitName(event, userId));
}

/** The LimitLedger named `name` ({@link limitName}): for callers that grouped buyers by ledger first. */
export const limitStubNamed = (ns: LimitNamespace, name: string): LimitStub => ns.get(ns.idFromName(name));

/** The name of {@link limitStub}'s object. */
export const limitName = (event: { id: string } & Parameters<typeof limitBuckets>[0], userId: string): string =>
  `lim:${event.id}:${hash32(userId) % limitBuckets(event)}`;

/** The configuration an Inventory DO of `section` (and `shard`) is initialized with. */
export function inventoryConfig(event: EventDoc, section: Section, shard: number): InventoryConfig {
  const shards = section.kind === "ga" ? (section.shards ?? 1) : 1;
  const cfg: InventoryConfig = {
    eventId: event.id,
    sectionId: section.id,
    kind: section.kind,
    shard,
    shards,
    capacity: section.kind === "ga" ? gaShardCapacity(section.capacity, shards, shard) : section.capacity,
    price: section.price,
    currency: event.currency,
    holdSeconds: event.holdSeconds,
  };
  if (section.rows) cfg.rows = section.rows;
  return cfg;
}

/** Event fields the Inventory DOs forward to the WaitingRoom DO. */
export const inventoryEvent = (event: EventDoc): EventRouting => ({
  id: event.id,
  sections: event.sections,
  waitingRoom: event.waitingRoom,
  saleStartsAt: event.saleStartsAt,
});

/** The random part of a hold id (`hld_<random>.<event>.<section>.<shard>`), the same for every shard tried. */
const holdKeyOf = (holdId: string): string => holdId.split(".")[0] as string;

/**
 * GA shards this isolate recently saw sold out, so a sold-out storm does not ask every shard on every
 * request. Entries live {@link EMPTY_SHARD_TTL_MS}: seats that come back (expiry, release) are tried again
 * after that.
 */
const emptyShards = new Map<string, number>();
const EMPTY_SHARD_TTL_MS = 2_000;

/** Forgets what this isolate remembers about empty shards (tests). */
export const forgetEmptyShards = (): void => emptyShards.clear();

/** The order in which a buyer tries the shards of a GA section: their own shard first, then the next ones. */
export function shardOrder(userId: string, shards: number): number[] {
  const start = hash32(userId) % shards;
  return Array.from({ length: shards }, (_, i) => (start + i) % shards);
}

/** Records the edge-observed latency of a Durable Object call (queueing included). */
const observeDoCall = (object: string, method: string, startedAt: number): void =>
  metric.doCallDurationMs.observe({ object, method }, Date.now() - startedAt);

/** Maps an exception thrown by a DO call (overload, reset) to 503 `overloaded`; rethrows anything else. */
export function doCallError(err: unknown, what: string): never {
  if (err instanceof ApiError) throw err;
  const msg = String(err);
  if (/overloaded|exceeded|reset|too many|internal error|network connection lost/i.test(msg)) {
    metric.doOverloads.inc({ what });
    throw new ApiError("overloaded", `The ${what} is busy; retry shortly.`, { retryAfterSeconds: 1 });
  }
  throw err;
}

/**
 * Places a hold for `userId`: checks the request against the event ({@link holdQuantity}), then holds in
 * the owning Inventory DO, which first reserves the quantity in the buyer's LimitLedger (the event's
 * per-customer limit travels with the request); for GA the buyer's shard first, then the others
 * ({@link holdInShards}). `section` availability from
 * the published snapshot, when given, answers `sold_out` without any DO call.
 */
export async function placeHold(
  deps: HoldDeps,
  event: EventDoc,
  userId: string,
  input: HoldInput,
  opts: { now?: number; availability?: SectionAvailability } = {},
): Promise<HoldView> {
  const now = opts.now ?? Date.now();
  if (event.status === "cancelled") throw new ApiError("event_cancelled", "This event is cancelled.");
  const { section, quantity } = holdQuantity(event, input, now);
  if (opts.availability && opts.availability.available === 0 && opts.availability.held === 0)
    throw new ApiError("sold_out", "This section is sold out.");
  const candidates = shardCandidates(event, section, userId, now);
  if (!candidates.length) throw new ApiError("sold_out", "This section is sold out.");

  const key = holdKeyOf(newLocatedId("hld", { eventId: event.id, sectionId: section.id, shard: candidates[0] as number }));
  const outcome = await holdInShards(deps, event, section, candidates, { key, userId, input, quantity });
  if (outcome.ok) {
    metric.holds.inc({ result: "created", kind: section.kind });
    deps.analytics?.(
      analyticsEvent({
        id: `hold.created:${outcome.value.id}`,
        kind: "hold.created",
        eventId: event.id,
        at: new Date(now).toISOString(),
        userId,
        quantity,
      }),
    );
    return outcome.value;
  }
  metric.holds.inc({ result: outcome.code, kind: section.kind });
  return unwrap(outcome);
}

/** The section and quantity a hold request asks for, or the 4xx it earns (sale window, shape, limit). */
function holdQuantity(event: EventDoc, input: HoldInput, now: number): { section: Section; quantity: number } {
  if (now < Date.parse(event.saleStartsAt)) throw new ApiError("sale_not_started", `The sale opens at ${event.saleStartsAt}.`);
  const section = event.sections.find((s) => s.id === input.sectionId);
  if (!section)
    throw new ApiError("validation_failed", `No section ${input.sectionId} in this event.`, {
      errors: [{ path: "sectionId", message: "unknown section" }],
    });
  if (input.seats && input.quantity !== undefined)
    throw new ApiError("validation_failed", "Send either seats or quantity, not both.", {
      errors: [{ path: "seats", message: "seats and quantity are exclusive" }],
    });
  if (section.kind === "ga" && input.seats)
    throw new ApiError("validation_failed", "General admission sections sell a quantity, not named seats.", {
      errors: [{ path: "seats", message: "not allowed for a GA section" }],
    });
  const quantity = input.seats?.length ?? input.quantity ?? 1;
  if (quantity > event.perCustomerLimit)
    throw new ApiError("limit_exceeded", `This event allows ${event.perCustomerLimit} places per customer.`);
  return { section, quantity };
}

/** The Inventory DOs to try, in order: a seated section's one; a GA section's shards, minus those seen sold out lately. */
function shardCandidates(event: EventDoc, section: Section, userId: string, now: number): number[] {
  const order = section.kind === "ga" ? shardOrder(userId, section.shards ?? 1) : [0];
  return order.filter((shard) => (emptyShards.get(`${event.id}:${section.id}:${shard}`) ?? 0) < now);
}

/** A hold to place: its reservation key, owner, request and quantity. */
interface PendingHold {
  key: string;
  userId: string;
  input: HoldInput;
  quantity: number;
}

/**
 * Holds in the first of `candidates` that has the places (GA falls through to the next shard on
 * `sold_out` / `seats_unavailable`; anything else ends the search). The last failure when none does.
 */
async function holdInShards(
  deps: HoldDeps,
  event: EventDoc,
  section: Section,
  candidates: number[],
  h: PendingHold,
): Promise<Outcome<HoldView>> {
  let last: Outcome<HoldView> = { ok: false, code: "sold_out", detail: "This section is sold out." };
  /** GA shards that had some places, but fewer than asked. */
  const partial: number[] = [];
  for (const shard of candidates) {
    const t1 = Date.now();
    let outcome: Outcome<HoldView>;
    try {
      outcome = await holdInShard(deps, event, section, shard, h);
    } catch (err) {
      // The hold may or may not exist: keep the reservation, which lapses with the hold's lifetime.
      doCallError(err, "inventory");
    }
    observeDoCall("inventory", "hold", t1);
    if (outcome.ok) return outcome;
    last = outcome;
    if (section.kind !== "ga" || (outcome.code !== "sold_out" && outcome.code !== "seats_unavailable")) return outcome;
    if (outcome.code === "sold_out") emptyShards.set(`${event.id}:${section.id}:${shard}`, Date.now() + EMPTY_SHARD_TTL_MS);
    else partial.push(shard);
  }
  // No shard had the quantity, but some had a few: the places left are scattered over the shards.
  if (partial.length) return (await gatherAndHold(deps, event, section, partial, h)) ?? last;
  return last;
}

/**
 * GA, when no shard had `h.quantity` places but `partial` (in the buyer's order) had some: moves places
 * from the others to the first of them (durable-objects/inventory-capacity.ts: each move exactly once,
 * finished by the donor's alarm if this request stops half way) and holds there. Undefined when the
 * shards do not have enough between them; the places moved stay on sale where they went.
 */
async function gatherAndHold(
  deps: HoldDeps,
  event: EventDoc,
  section: Section,
  partial: number[],
  h: PendingHold,
): Promise<Outcome<HoldView> | undefined> {
  const [target, ...donors] = partial as [number, ...number[]];
  const stub = (shard: number) => inventoryStub(deps.inventory, { eventId: event.id, sectionId: section.id, shard });
  try {
    let need = h.quantity - (await stub(target).snapshot()).available;
    for (const donor of donors) {
      if (need <= 0) break;
      const transferId = `xfr_${randomToken(20)}`;
      const lent = await stub(donor).lendCapacity(transferId, target, need);
      if (!lent.ok) continue;
      await stub(target).receiveCapacity(transferId, donor, lent.value.lent);
      metric.capacityMoves.inc({}, lent.value.lent);
      need -= lent.value.lent;
      // The donor's alarm would deliver it again (harmlessly) until told.
      await stub(donor)
        .capacityDelivered([transferId])
        .catch((err: unknown) =>
          log.warn("capacity move not confirmed to its donor; its alarm re-delivers", { transferId, error: String(err) }),
        );
    }
    if (need > 0) return undefined;
    return await holdInShard(deps, event, section, target, h);
  } catch (err) {
    doCallError(err, "inventory");
  }
}

/**
 * One Inventory DO's hold. The object keeps its configuration and the event's routing by version, so the
 * call carries only the request (`place`); an object that is new or keeps an older event version answers
 * `needs_setup`, and the hold is made again with the configuration (`hold`), which it keeps from then on.
 */
async function holdInShard(deps: HoldDeps, event: EventDoc, section: Section, shard: number, h: PendingHold) {
  const stub = inventoryStub(deps.inventory, { eventId: event.id, sectionId: section.id, shard });
  const req: HoldRequest = {
    holdId: `${h.key}.${event.id}.${section.id}.${shard}`,
    userId: h.userId,
    seats: h.input.seats,
    quantity: h.input.seats ? undefined : h.quantity,
    limit: event.perCustomerLimit,
    sentAt: Date.now(),
    eventVersion: event.version,
  };
  const placed = await stub.place(req);
  if (placed !== NEEDS_SETUP) return placed;
  return stub.hold(inventoryConfig(event, section, shard), inventoryEvent(event), req);
}

/**
 * Whether `loc` names an Inventory DO of `event`: its section exists and the shard is one of the section's
 * (a crafted id naming anything else must not reach, and so create, a Durable Object).
 */
export function isInventoryOf(event: Pick<EventDoc, "id" | "sections">, loc: InventoryLocation): boolean {
  if (loc.eventId !== event.id) return false;
  const section = event.sections.find((s) => s.id === loc.sectionId);
  if (!section) return false;
  return loc.shard < (section.kind === "ga" ? (section.shards ?? 1) : 1);
}

/** The location in a hold or order id, or 404 (an id the server never issued cannot exist). */
export function locationOf(prefix: "hld" | "ord", id: string): InventoryLocation {
  const loc = parseLocatedId(prefix, id);
  if (!loc) throw new ApiError("not_found", prefix === "hld" ? "No such hold." : "No such order.");
  return loc;
}

/** Parses a hold id or throws 404. */
export const holdLocation = (holdId: string): InventoryLocation => locationOf("hld", holdId);

/** A buyer's own hold. */
export async function getHold(deps: HoldDeps, holdId: string, userId: string): Promise<HoldView> {
  const stub = inventoryStub(deps.inventory, holdLocation(holdId));
  try {
    return unwrap(await stub.getHold(holdId, userId));
  } catch (err) {
    doCallError(err, "inventory");
  }
}

/** Releases a buyer's own hold; its places return to sale and stop counting against the limit. */
export async function releaseHold(deps: HoldDeps, holdId: string, userId: string): Promise<HoldView> {
  const stub = inventoryStub(deps.inventory, holdLocation(holdId));
  let view: HoldView;
  try {
    view = unwrap(await stub.release(holdId, userId));
  } catch (err) {
    doCallError(err, "inventory");
  }
  // The Inventory DO settled the buyer's ledger before answering.
  if (view.status === "released")
    deps.analytics?.(
      analyticsEvent({
        id: `hold.released:${holdId}`,
        kind: "hold.released",
        eventId: view.eventId,
        at: new Date().toISOString(),
        userId,
        quantity: view.quantity,
      }),
    );
  return view;
}

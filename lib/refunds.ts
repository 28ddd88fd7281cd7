import { type CatalogDb, type CatalogDeps, cancelEventInCatalog, findEventRow } from "./catalog";
import type { EventDoc } from "./event-schema";
import { parseLocatedId } from "./hold-id";
import { doCallError, type InventoryNamespace, inventoryConfig, inventoryEvent, inventoryStub, locationOf } from "./holds";
import { log } from "./log";
import { metric } from "./metric-catalog";
import type { Order, RefundRequestMessage } from "./order";
import { type OrganizerEventMessage, sendOrganizerEvent } from "./organizer-webhooks";
import { ApiError, unwrap } from "./problem";

/**
 * Refunds and cancellation at the edge (DESIGN.md "After the sale"). The order's Inventory DO (found from
 * the located order id) voids the tickets and returns their places in one step, then asks the provider
 * (idempotent per refund key) outside that step; a provider failure leaves the refund pending there, and
 * the DO's alarm retries it. The shard, the buyer's notice, the organizer's webhook and the rollups follow
 * through the orders queue.
 *
 * Cancellation marks the event cancelled in the catalog (D1, KV read model, caches), then tells each of
 * its Inventory DOs, which refuse holds and checkouts from then on and queue one refund request per order
 * they recorded (the refunds queue, consumed by {@link refundForCancellation}).
 */

/** Who is asking: the event's organizer or an admin. */
export interface Actor {
  sub: string;
  role: string;
}

/** The event of an order id, when `actor` may act on it (else 404: another organizer's order does not exist for them). */
async function ownedEvent(
  db: CatalogDb,
  actor: Actor,
  eventId: string,
  what: string,
): Promise<NonNullable<Awaited<ReturnType<typeof findEventRow>>>> {
  const row = await findEventRow(db, eventId);
  if (!row || (actor.role !== "admin" && row.organizerId !== actor.sub)) throw new ApiError("not_found", `No such ${what}.`);
  return row;
}

/** What a refund needs. */
export interface RefundDeps {
  db: CatalogDb;
  inventory: InventoryNamespace;
}

/** POST /v1/orders/:id/refund input. */
export interface RefundInput {
  tickets?: string[];
  reason?: string;
}

/**
 * The provider's refund key of an organizer's refund: derived from the request's Idempotency-Key when it
 * has one (a retried request settles the same refund), else fresh.
 */
export async function refundKeyOf(orderId: string, idempotencyKey: string | undefined): Promise<string> {
  const base = `${orderId.split(".")[0]}:refund:`;
  if (!idempotencyKey) return base + crypto.randomUUID();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(idempotencyKey)));
  return base + [...digest.slice(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Refunds tickets of an order (all when none are named) for its event's organizer or an admin. */
export async function refundOrder(deps: RefundDeps, actor: Actor, orderId: string, input: RefundInput, refundKey: string): Promise<Order> {
  const loc = locationOf("ord", orderId);
  await ownedEvent(deps.db, actor, loc.eventId, "order");
  const inv = inventoryStub(deps.inventory, loc);
  let done: Awaited<ReturnType<typeof inv.refundOrder>>;
  try {
    done = await inv.refundOrder(orderId, {
      ...(input.tickets ? { tickets: input.tickets } : {}),
      refundKey,
      cause: "organizer",
      ...(input.reason ? { reason: input.reason } : {}),
    });
  } catch (err) {
    doCallError(err, "inventory");
  }
  const value = unwrap(done);
  if (value.refundKey) await settle(inv, value.refundKey, "organizer");
  return value.order;
}

/** Asks the DO to get the provider's confirmation now; false leaves it to the DO's alarm. */
async function settle(inv: ReturnType<typeof inventoryStub>, key: string, reason: string): Promise<boolean> {
  try {
    const settled = await inv.settleRefund(key);
    if (settled) metric.refunds.inc({ reason });
    else log.warn("refund recorded; the provider has not confirmed it yet (the inventory retries)", { refundKey: key });
    return settled;
  } catch (err) {
    log.error("refund settlement failed; the inventory retries", { refundKey: key, error: String(err) });
    return false;
  }
}

/** What a cancellation needs. */
export interface CancelDeps extends CatalogDeps {
  inventory: InventoryNamespace;
  notifications: Queue;
}

/** Every Inventory DO location of an event. */
const inventoriesOf = (event: EventDoc) =>
  event.sections.flatMap((s) => Array.from({ length: s.kind === "ga" ? (s.shards ?? 1) : 1 }, (_, shard) => ({ section: s, shard })));

/**
 * Cancels an event (its organizer or an admin): catalog first (new holds are refused at the edge), then
 * every Inventory DO of the event (authoritative: they refuse holds and checkouts at once and queue the
 * refunds), then the organizer's `event.cancelled` webhook. Idempotent: cancelling again repeats the
 * steps, each of which is.
 */
export async function cancelEvent(deps: CancelDeps, actor: Actor, eventId: string, reason?: string): Promise<EventDoc> {
  await ownedEvent(deps.db, actor, eventId, "event");
  const doc = await cancelEventInCatalog(deps, eventId);
  const ev = inventoryEvent(doc);
  try {
    await Promise.all(
      inventoriesOf(doc).map(({ section, shard }) =>
        inventoryStub(deps.inventory, { eventId, sectionId: section.id, shard }).cancelSales(inventoryConfig(doc, section, shard), ev, {
          ...(reason ? { reason } : {}),
          eventName: doc.name,
        }),
      ),
    );
  } catch (err) {
    doCallError(err, "inventory");
  }
  const cancelled: OrganizerEventMessage = {
    v: 1,
    kind: "organizer.event",
    id: `event.cancelled:${eventId}`,
    type: "event.cancelled",
    eventId,
    occurredAt: new Date().toISOString(),
    data: { eventId, ...(reason ? { reason } : {}) },
  };
  await sendOrganizerEvent(deps.notifications, [cancelled]);
  return doc;
}

/** Refund progress of a cancelled event: orders with valid tickets when it was cancelled, and those refunded. */
export async function cancellationProgress(inventory: InventoryNamespace, event: EventDoc): Promise<{ total: number; refunded: number }> {
  const all = await Promise.all(
    inventoriesOf(event).map(({ section, shard }) =>
      inventoryStub(inventory, { eventId: event.id, sectionId: section.id, shard }).cancellationProgress(),
    ),
  );
  return all.reduce((a, p) => ({ total: a.total + p.total, refunded: a.refunded + p.refunded }), { total: 0, refunded: 0 });
}

/**
 * Refunds what is left of one order of a cancelled event (the refunds queue). Throws when the provider has
 * not confirmed (the message is retried with backoff; the DO's alarm retries the provider too).
 */
export async function refundForCancellation(
  inventory: InventoryNamespace,
  msg: RefundRequestMessage,
): Promise<"refunded" | "nothing_left"> {
  const loc = parseLocatedId("ord", msg.orderId);
  if (!loc) throw new Error(`not an order id: ${msg.orderId}`);
  const inv = inventoryStub(inventory, loc);
  const done = unwrap(
    await inv.refundOrder(msg.orderId, {
      refundKey: `${msg.orderId.split(".")[0]}:cancel`,
      cause: "event.cancelled",
      ...(msg.reason ? { reason: msg.reason } : {}),
    }),
  );
  if (!done.refundKey) return "nothing_left";
  if (!(await inv.settleRefund(done.refundKey))) throw new Error(`the provider has not confirmed refund ${done.refundKey} yet`);
  metric.refunds.inc({ reason: "event cancelled" });
  return "refunded";
}

import type { EventDoc } from "./event-schema";
import { inventoryName, parseLocatedId } from "./hold-id";
import { doCallError, type InventoryNamespace, inventoryStub, isInventoryOf } from "./holds";
import { metric } from "./metric-catalog";
import { type Order, orderStatusOf, type TicketStatus } from "./order";
import { ApiError } from "./problem";
import type { CheckInResult, CheckInRow, TicketView } from "./ticket-status";
import { parseTicketId, verifyTicketCode } from "./tickets";

/**
 * The edge side of tickets and check-in (DESIGN.md "After the sale"): find a ticket from its located id,
 * check a scanned code in at the Inventory DO that recorded its order (which keeps ticket state, so a
 * check-in happens once however many gates scan the code), and list an event's tickets for an offline
 * scanner. Routes resolve who may act on the event; this module talks to the DOs.
 */

/** Runs a DO call, mapping transport failures to 503. */
async function doCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    doCallError(err, "inventory");
  }
}

/**
 * A buyer's own ticket with its status; 404 for an id the server never issued, another buyer's ticket, or
 * none. `userId` null: any buyer's (the caller checked a signed QR-code link for this ticket id).
 */
export async function getTicket(inventory: InventoryNamespace, ticketId: string, userId: string | null): Promise<TicketView> {
  const loc = parseTicketId(ticketId);
  if (!loc) throw new ApiError("not_found", "No such ticket.");
  const ticket = await doCall(() => inventoryStub(inventory, loc).getTicket(loc.orderId, ticketId, userId));
  if (!ticket) throw new ApiError("not_found", "No such ticket.");
  return ticket;
}

/**
 * Orders read from the shards (which do not see check-ins or refunds of tickets) with each ticket's live
 * status from the Inventory DO that keeps it: one call per DO, in parallel. An unreachable DO is a 503.
 */
export async function withLiveTicketStatus(inventory: InventoryNamespace, orders: Order[]): Promise<Order[]> {
  const byObject = new Map<string, { loc: NonNullable<ReturnType<typeof parseLocatedId>>; ids: string[] }>();
  for (const o of orders) {
    const loc = parseLocatedId("ord", o.id);
    if (!loc) continue;
    const name = inventoryName(loc);
    const entry = byObject.get(name) ?? { loc, ids: [] };
    entry.ids.push(o.id);
    byObject.set(name, entry);
  }
  const statuses = new Map<string, TicketStatus>();
  await Promise.all(
    [...byObject.values()].map(async ({ loc, ids }) => {
      const marked = await doCall(() => inventoryStub(inventory, loc).ticketStatuses(ids));
      for (const [ticketId, status] of Object.entries(marked)) statuses.set(ticketId, status);
    }),
  );
  return orders.map((o) => {
    const tickets = o.tickets.map((t) => ({ ...t, status: statuses.get(t.id) ?? t.status }));
    return { ...o, tickets, status: orderStatusOf(tickets) };
  });
}

/** A first check-in. */
export interface CheckedIn {
  ticket: TicketView;
  checkedInAt: string;
}

/**
 * Checks in a scanned code at `event` (whose organizer, or an admin, is `by`): verifies the signature,
 * that the code is for this event and names one of its Inventory DOs, then marks the ticket used there.
 * 404 for a forged code, a code of another event or a ticket that is not there; 409 `already_checked_in`
 * with the first `checkedInAt`; 410 `ticket_void` for a refunded ticket.
 */
export async function checkInCode(
  deps: { inventory: InventoryNamespace; secret: string },
  event: Pick<EventDoc, "id" | "sections">,
  code: string,
  by: string,
): Promise<CheckedIn> {
  const claims = await verifyTicketCode(deps.secret, code);
  const loc = claims && claims.e === event.id ? parseTicketId(claims.t) : null;
  if (!claims || !loc || loc.orderId !== claims.o || !isInventoryOf(event, loc)) {
    metric.checkIns.inc({ result: "not_found" });
    throw new ApiError("not_found", "No ticket of this event has this code.");
  }
  const stub = inventoryStub(deps.inventory, loc);
  const r = await doCall<CheckInResult>(async () => (await stub.checkIn(claims.o, claims.t, by)) as CheckInResult);
  metric.checkIns.inc({ result: r.result === "void" ? "ticket_void" : r.result });
  switch (r.result) {
    case "checked_in":
      return { ticket: r.ticket, checkedInAt: r.checkedInAt };
    case "already_checked_in":
      throw new ApiError("already_checked_in", `Ticket ${r.ticket.id} (${r.ticket.seat}) was checked in at ${r.checkedInAt}.`, {
        extensions: { checkedInAt: r.checkedInAt, ticketId: r.ticket.id },
      });
    case "void":
      throw new ApiError("ticket_void", `Ticket ${r.ticket.id} (${r.ticket.seat}) was refunded: it does not admit.`, {
        extensions: { ticketId: r.ticket.id, voidedAt: r.voidedAt },
      });
    default:
      throw new ApiError("not_found", "No ticket of this event has this code.");
  }
}

/** The check-in list's columns (CSV header). */
export const CHECK_IN_COLUMNS = ["ticket_id", "order_id", "section", "seat", "status", "checked_in_at", "voided_at", "code"] as const;

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF, quotes doubled. Values are kept
 * exact (a scanner matches codes byte for byte), so nothing is prefixed against spreadsheet formulas.
 */
export function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** The CSV line of a check-in row (CRLF-terminated). */
export function csvLine(sectionId: string, r: CheckInRow): string {
  const fields = [
    r.ticketId,
    r.orderId,
    sectionId,
    r.seat,
    r.status,
    r.status === "used" ? (r.at ?? "") : "",
    r.status === "void" ? (r.at ?? "") : "",
    r.code,
  ];
  return `${fields.map(csvField).join(",")}\r\n`;
}

/** Orders per DO call of the export (a page of tickets stays well under the RPC size limit). */
const EXPORT_PAGE_ORDERS = 200;

/**
 * The check-in list of an event as CSV lines: a header, then every ticket of every Inventory DO of the
 * event (sections in catalog order, shards in order, orders by id), read page by page.
 */
export async function* checkInCsv(inventory: InventoryNamespace, event: Pick<EventDoc, "id" | "sections">): AsyncGenerator<string> {
  yield `${CHECK_IN_COLUMNS.join(",")}\r\n`;
  for (const section of event.sections) {
    const shards = section.kind === "ga" ? (section.shards ?? 1) : 1;
    for (let shard = 0; shard < shards; shard++) {
      const stub = inventoryStub(inventory, { eventId: event.id, sectionId: section.id, shard });
      let after = "";
      for (;;) {
        const page = await doCall(() => stub.checkInList(after, EXPORT_PAGE_ORDERS));
        if (page.rows.length) yield page.rows.map((r) => csvLine(section.id, r)).join("");
        if (!page.next) break;
        after = page.next;
      }
    }
  }
}

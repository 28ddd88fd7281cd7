import { z } from "zod";
import { type InventoryLocation, parseLocatedId } from "./hold-id";
import type { Ticket } from "./order";
import { signPayload, verifyPayload } from "./signing";

/**
 * Tickets: one per seat (general admission: one per numbered place `<section>/GA-<n>`). A ticket's `code`
 * (its QR payload) is a token signed by the platform (lib/signing, purpose "ticket"), so a gate scanner
 * checks it offline with the signing secret and learns the ticket, order, event and seat it admits.
 * Checkout issues the tickets before it answers (the order response carries them); the orders queue
 * stores them as they are, so the codes the buyer saw are the codes in the shard.
 */

/** What checkout knows about an order when it issues its tickets. */
export interface TicketOrder {
  orderId: string;
  eventId: string;
  sectionId: string;
  /** Seat ids (seated sections); empty for general admission. */
  seats: string[];
  quantity: number;
}

/** What a ticket code proves: its ticket, order, event and seat (or GA place). */
export interface TicketClaims {
  /** Ticket id. */
  t: string;
  /** Order id. */
  o: string;
  /** Event id. */
  e: string;
  /** Seat (or GA place). */
  s: string;
}

/**
 * The signed payload of a ticket code: the order id, the ticket's number in it and the seat. The ticket id
 * and the event follow from the order id (both are located by it), so the code carries neither: a shorter
 * code is a QR code of fewer, larger modules (version 9 instead of 13 for a typical code), which a gate
 * reads more reliably off a phone screen.
 */
const compactClaims = z.strictObject({ o: z.string().min(1), n: z.number().int().min(1).max(9999), s: z.string().min(1) });
/** Codes issued before the compact form (ticket and event spelled out) still verify. */
const legacyClaims = z.object({ t: z.string().min(1), o: z.string().min(1), e: z.string().min(1), s: z.string().min(1) });

const PURPOSE = "ticket";

/** The seats tickets are issued for: the held seats, or numbered GA places when the section has none. */
const ticketSeats = (o: Pick<TicketOrder, "sectionId" | "seats" | "quantity">): string[] =>
  o.seats.length ? o.seats : Array.from({ length: o.quantity }, (_, i) => `${o.sectionId}/GA-${i + 1}`);

/**
 * The id of the `index`-th (0-based) ticket of an order: derived, so issuing again yields the same ids.
 * Located like the order id (`tkt_<the order's random part>_<n>.<eventId>.<sectionId>.<shard>`), so a
 * read goes straight to the Inventory DO that recorded the order: `ord_abc.evt_x.a.0` → `tkt_abc_1.evt_x.a.0`.
 */
export function ticketIdFor(orderId: string, index: number): string {
  const dot = orderId.indexOf(".");
  return `tkt_${orderId.slice(4, dot)}_${index + 1}${orderId.slice(dot)}`;
}

const TICKET_ID = /^tkt_([0-9a-hjkmnp-tv-z]{20})_([1-9]\d{0,3})(\..+)$/;

/** Where a ticket id points: its order and that order's Inventory DO. */
export interface TicketLocation extends InventoryLocation {
  orderId: string;
}

/**
 * The order (and its Inventory DO) of a ticket id, or null when the id is not one the server issues (the
 * order id it names must itself be a valid located order id). Ids of tickets issued before ticket ids
 * were located (`tkt_<random>_<n>`) have no location: null.
 */
export function parseTicketId(ticketId: string): TicketLocation | null {
  if (ticketId.length > 200) return null;
  const m = TICKET_ID.exec(ticketId);
  if (!m) return null;
  const orderId = `ord_${m[1]}${m[3]}`;
  const loc = parseLocatedId("ord", orderId);
  return loc ? { ...loc, orderId } : null;
}

/**
 * Issues the signed tickets of an order. Deterministic: the same order gives the same ids and codes, so a
 * checkout that is retried or replayed never mints a second set.
 */
export async function issueTickets(secret: string, order: TicketOrder): Promise<Ticket[]> {
  return Promise.all(
    ticketSeats(order).map(async (seat, i) => {
      const id = ticketIdFor(order.orderId, i);
      const claims: z.input<typeof compactClaims> = { o: order.orderId, n: i + 1, s: seat };
      return { id, seat, code: await signPayload(secret, PURPOSE, claims), status: "valid" as const };
    }),
  );
}

/**
 * Verifies a ticket code. Returns its claims, or null when the code is malformed, forged, signed with
 * another secret or for another purpose (a waiting-room pass is not a ticket).
 */
export async function verifyTicketCode(secret: string, code: string): Promise<TicketClaims | null> {
  const payload = await verifyPayload(secret, PURPOSE, code);
  const compact = compactClaims.safeParse(payload);
  if (compact.success) {
    const { o, n, s } = compact.data;
    const loc = parseLocatedId("ord", o);
    return loc ? { t: ticketIdFor(o, n - 1), o, e: loc.eventId, s } : null;
  }
  const legacy = legacyClaims.safeParse(payload);
  return legacy.success ? legacy.data : null;
}

/** Purpose of a QR-code link signature (a ticket code signature does not open a link, nor the reverse). */
const QR_LINK_PURPOSE = "ticket-qr";

/**
 * The `sig` of a ticket's QR-code link (`/v1/tickets/:id/qr.svg?sig=…`), for the order confirmation mail: a
 * mail client cannot send the buyer's bearer token, so the link itself proves the right to that one QR
 * code (what the mail holds anyway). It opens no other route and changes nothing.
 */
export const qrLinkSignature = (secret: string, ticketId: string): Promise<string> => signPayload(secret, QR_LINK_PURPOSE, { t: ticketId });

/** Whether `sig` was made by {@link qrLinkSignature} for this ticket id. */
export async function verifyQrLinkSignature(secret: string, ticketId: string, sig: string): Promise<boolean> {
  const payload = await verifyPayload(secret, QR_LINK_PURPOSE, sig);
  return z.object({ t: z.literal(ticketId) }).safeParse(payload).success;
}

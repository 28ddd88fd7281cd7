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

/** What a ticket code proves (the signed payload; short keys keep the QR code small). */
const ticketClaims = z.object({
  /** Ticket id. */
  t: z.string().min(1),
  /** Order id. */
  o: z.string().min(1),
  /** Event id. */
  e: z.string().min(1),
  /** Seat (or GA place). */
  s: z.string().min(1),
});
export type TicketClaims = z.output<typeof ticketClaims>;

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
      const claims: TicketClaims = { t: id, o: order.orderId, e: order.eventId, s: seat };
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
  const parsed = ticketClaims.safeParse(payload);
  return parsed.success ? parsed.data : null;
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

import { type Context, Hono } from "hono";
import { z } from "zod";
import { getEventDoc } from "../../lib/catalog";
import { CHECK_IN_COLUMNS, checkInCode, checkInCsv, getTicket } from "../../lib/check-in";
import type { EventDoc } from "../../lib/event-schema";
import { isInventoryOf } from "../../lib/holds";
import { EVENT_ID } from "../../lib/ids";
import { log } from "../../lib/log";
import { ticketStatus } from "../../lib/order";
import { catalogOrganizerOf } from "../../lib/organizer-webhooks";
import { ApiError } from "../../lib/problem";
import { qrSvg } from "../../lib/qr";
import { parseTicketId, verifyQrLinkSignature } from "../../lib/tickets";
import { principalOf, readContext } from "../http";
import { route } from "../route";
import type { AppEnv } from "../types";

/** A buyer's tickets and their QR codes; check-in and the check-in list for the event's organizer. */
export const tickets = new Hono<AppEnv>();

const ticketParam = z.object({ id: z.string().max(200) });
const eventParam = z.object({ id: z.string().regex(EVENT_ID, "not an event id") });
const checkInInput = z.strictObject({
  code: z.string().min(1).max(2048).describe("The scanned ticket code (the QR code's text)"),
});

const ticketSchema = z.object({
  id: z.string(),
  orderId: z.string(),
  eventId: z.string(),
  seat: z.string(),
  code: z.string().describe("Signed token: the QR code's text"),
  status: ticketStatus,
});

/**
 * 404 unless the ticket id names an Inventory DO of an existing event, section and shard (from the cached
 * catalog), so a crafted id never addresses, and creates, a Durable Object.
 */
async function requireKnownTicket(c: Context<AppEnv>, ticketId: string): Promise<void> {
  const loc = parseTicketId(ticketId);
  const event = loc && (await getEventDoc(readContext(c), loc.eventId));
  if (!loc || !event || !isInventoryOf(event, loc)) throw new ApiError("not_found", "No such ticket.");
}

/** The event for its organizer (or an admin); 404 for another organizer's event or none. */
async function ownEvent(c: Context<AppEnv>, eventId: string): Promise<EventDoc> {
  const who = principalOf(c);
  const [organizerId, event] = await Promise.all([catalogOrganizerOf(c.env.CATALOG_DB)(eventId), getEventDoc(readContext(c), eventId)]);
  if (!organizerId || !event || (who.role !== "admin" && organizerId !== who.sub)) throw new ApiError("not_found", `No event ${eventId}.`);
  return event;
}

route(
  tickets,
  {
    operationId: "getTicket",
    method: "get",
    path: "/v1/tickets/:id",
    summary: "One of your tickets with its status: valid, void (refunded) or used (checked in)",
    tags: ["tickets"],
    auth: ["buyer"],
    rateLimit: "reads",
    params: ticketParam,
    responses: { 200: { description: "The ticket", schema: z.object({ ticket: ticketSchema }) } },
    errors: ["not_found", "overloaded"],
  },
  async (c, { param: { id } }) => {
    await requireKnownTicket(c, id);
    const ticket = await getTicket(c.env.INVENTORY, id, principalOf(c).sub);
    return c.json({ ticket }, 200, { "Cache-Control": "private, no-store" });
  },
);

const qrQuery = z.strictObject({
  sig: z
    .string()
    .min(1)
    .max(1024)
    .optional()
    .describe("The signature of a QR-code link from the order confirmation mail: opens this ticket's QR code without a token"),
});

/**
 * Bearer auth as a buyer, unless the request carries a QR-code link's `sig` (checked by the handler). This
 * is why the QR route is declared by hand rather than through route(), whose auth is unconditional.
 */
route(
  tickets,
  {
    operationId: "getTicketQrCode",
    method: "get",
    path: "/v1/tickets/:id/qr.svg",
    summary:
      "The QR code of one of your tickets (SVG; its text is the ticket's signed code). With the buyer's token, or with the `sig` of the link in the order confirmation mail instead",
    tags: ["tickets"],
    auth: ["buyer"],
    // The link in the confirmation mail carries `sig` (checked below) instead of a token.
    authUnless: (c) => c.req.query("sig") !== undefined,
    rateLimit: "reads",
    params: ticketParam,
    query: qrQuery,
    responses: { 200: { description: "image/svg+xml", mediaType: "image/svg+xml" } },
    errors: ["not_found", "overloaded"],
  },
  async (c, { param: { id }, query: { sig } }) => {
    if (sig !== undefined && !(await verifyQrLinkSignature(c.env.SIGNING_SECRET, id, sig)))
      throw new ApiError("not_found", "No such ticket.");
    await requireKnownTicket(c, id);
    const ticket = await getTicket(c.env.INVENTORY, id, sig !== undefined ? null : principalOf(c).sub);
    // The code never changes (a void or used ticket keeps its code): the buyer's browser may keep it.
    return c.body(qrSvg(ticket.code), 200, {
      "Content-Type": "image/svg+xml; charset=utf-8",
      "Cache-Control": "private, max-age=3600",
      // Served as a document it must not run anything (qrcode-generator draws rects and paths only).
      "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    });
  },
);

route(
  tickets,
  {
    operationId: "checkInTicket",
    method: "post",
    path: "/v1/events/:id/check-ins",
    summary:
      "Check a scanned ticket code in at the event's gate (its organizer or an admin): 200 the first time, 409 already_checked_in (with the first checkedInAt) after, 410 ticket_void for a refunded ticket, 404 for a code of another event or a forged one",
    tags: ["organizer"],
    auth: ["organizer", "admin"],
    params: eventParam,
    body: checkInInput,
    responses: {
      200: {
        description: "Checked in now",
        schema: z.object({ ticket: ticketSchema, checkedInAt: z.iso.datetime({ offset: true }) }),
      },
    },
    errors: ["not_found", "already_checked_in", "ticket_void", "overloaded"],
  },
  async (c, { param: { id }, json: { code } }) => {
    const event = await ownEvent(c, id);
    const done = await checkInCode({ inventory: c.env.INVENTORY, secret: c.env.SIGNING_SECRET }, event, code, principalOf(c).sub);
    return c.json(done, 200, { "Cache-Control": "no-store" });
  },
);

route(
  tickets,
  {
    operationId: "exportCheckIns",
    method: "get",
    path: "/v1/events/:id/check-ins.csv",
    summary: `The event's check-in list for an offline scanner (its organizer or an admin): CSV (RFC 4180) with the columns ${CHECK_IN_COLUMNS.join(", ")}`,
    tags: ["organizer"],
    auth: ["organizer", "admin"],
    params: eventParam,
    responses: { 200: { description: "text/csv", mediaType: "text/csv" } },
    errors: ["not_found", "overloaded"],
  },
  async (c, { param: { id } }) => {
    const event = await ownEvent(c, id);
    const lines = checkInCsv(c.env.INVENTORY, event);
    // The header and the first page are read before answering, so an Inventory DO that is unreachable at the
    // start is a 503. A failure later errors the body stream: the connection is cut, so the scanner sees a
    // failed download, never a short file that looks complete.
    const head = [(await lines.next()).value ?? "", (await lines.next()).value ?? ""].join("");
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode(head));
      },
      async pull(controller) {
        try {
          const next = await lines.next();
          if (next.done) controller.close();
          else controller.enqueue(encoder.encode(next.value));
        } catch (err) {
          log.error("check-in export failed midway", { eventId: event.id, error: String(err) });
          controller.error(err);
        }
      },
    });
    return c.body(body, 200, {
      "Content-Type": "text/csv; charset=utf-8",
      "Content-Disposition": `attachment; filename="check-ins-${event.id}.csv"`,
      "Cache-Control": "private, no-store",
    });
  },
);

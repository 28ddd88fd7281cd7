import { type Context, Hono } from "hono";
import { z } from "zod";
import { getEventDoc } from "../../lib/catalog";
import { ledgerStub } from "../../lib/holds";
import { EVENT_ID } from "../../lib/ids";
import { ApiError } from "../../lib/problem";
import { joinQueue, pollQueue, type QueueDeps } from "../../lib/waiting-room";
import { principalOf, readContext } from "../http";
import { route } from "../route";
import type { AppEnv } from "../types";

const eventParam = z.object({ id: z.string().regex(EVENT_ID, "not an event id") });
/** A signed token: `base64url(payload).base64url(mac)`. */
const tokenShape = z
  .string()
  .max(2_048)
  .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, "not a queue ticket");
const ticketHeader = z.object({ "x-queue-ticket": tokenShape });
const optionalTicketHeader = z.object({ "x-queue-ticket": z.string().max(4_096).optional() });

const queueStatus = z.object({
  ticket: z.string().describe("Signed queue ticket: send it back as X-Queue-Ticket when polling"),
  state: z.enum(["waiting", "admitted"]),
  position: z
    .number()
    .int()
    .describe("Tickets ahead of yours not yet admitted (0 once admitted). Before the opening: the pre-queue's size"),
  estimatedWaitSeconds: z.number().int(),
  pass: z.string().optional().describe("Once admitted: send it as X-Queue-Pass with holds on this event (valid 10 min)"),
  passExpiresAt: z.string().optional(),
  soldOut: z.literal(true).optional().describe("The event is sold out: nobody else will be admitted"),
  pollAfterSeconds: z.number().int().describe("When to poll again"),
});

const ROOM_RULES =
  "The ticket is signed at the edge. Buyers who join before the sale opens are put in a random order at the opening " +
  "(fixed once drawn), one place per buyer: joining again before the opening answers the same ticket. Afterwards the order is first come, " +
  "first served. Admission follows a watermark the event's waiting room moves at a rate that adapts to the " +
  "inventory's health, between a floor and the event's `waitingRoom.admitPerMinute`. Events whose waiting room is " +
  "off admit at once: the answer is `admitted` with a pass (holds on such events do not need it).";

/** The waiting room: join (POST) and poll (GET). */
export const queue = new Hono<AppEnv>();

const deps = (c: Context<AppEnv>): QueueDeps => ({
  rooms: c.env.WAITING_ROOM,
  waitUntil: (p) => c.executionCtx.waitUntil(p),
  secret: c.env.SIGNING_SECRET,
  preQueue: {
    get: (userId, eventId) => ledgerStub(c.env.CUSTOMER_LEDGER, userId).preQueueTicket(eventId),
    claim: (userId, eventId, ticket, expiresAt) =>
      ledgerStub(c.env.CUSTOMER_LEDGER, userId).claimPreQueueTicket(eventId, ticket, expiresAt),
  },
});

route(
  queue,
  {
    operationId: "joinQueue",
    method: "post",
    path: "/v1/events/:id/queue",
    summary: `Join the event's waiting room (buyer). ${ROOM_RULES} Sending a valid X-Queue-Ticket of yours for this event keeps it instead of queueing again.`,
    tags: ["waiting room"],
    auth: ["buyer"],
    rateLimit: "queue",
    params: eventParam,
    headerSchema: optionalTicketHeader,
    headers: [{ name: "X-Queue-Ticket", description: "Optional: your ticket, to keep your place on a repeated join" }],
    responses: { 202: { description: "Queued (or admitted at once)", schema: queueStatus } },
    errors: ["not_found", "overloaded"],
  },
  async (c, { param, header }) => {
    const event = await getEventDoc(readContext(c), param.id);
    if (!event) throw new ApiError("not_found", `No event ${param.id}.`);
    const status = await joinQueue(deps(c), event, principalOf(c).sub, Date.now(), header["x-queue-ticket"]);
    return c.json(status, 202, { "Cache-Control": "no-store" });
  },
);

route(
  queue,
  {
    operationId: "pollQueue",
    method: "get",
    path: "/v1/events/:id/queue",
    summary:
      "Your place in the waiting room, and a pass once admitted (buyer). 400 `validation_failed` when X-Queue-Ticket is " +
      "missing or not shaped like a ticket; 403 `not_admitted` when it is forged, altered, expired (6 h after the later " +
      "of joining and the opening), issued to another user, or for another event.",
    tags: ["waiting room"],
    auth: ["buyer"],
    params: eventParam,
    headerSchema: ticketHeader,
    headers: [{ name: "X-Queue-Ticket", required: true, description: "The ticket the join answered" }],
    responses: { 200: { description: "Waiting or admitted", schema: queueStatus } },
    errors: ["validation_failed", "not_found", "not_admitted", "overloaded"],
  },
  async (c, { param, header }) => {
    const event = await getEventDoc(readContext(c), param.id);
    if (!event) throw new ApiError("not_found", `No event ${param.id}.`);
    const status = await pollQueue(deps(c), event, principalOf(c).sub, header["x-queue-ticket"]);
    return c.json(status, 200, { "Cache-Control": "no-store" });
  },
);

import { z } from "zod";
import type { EventDoc, EventRouting } from "./event-schema";
import { EVENT_ID, randomToken } from "./ids";
import { log } from "./log";
import { metric } from "./metric-catalog";
import { ApiError } from "./problem";
import { parsedBody, ReadThroughCache } from "./read-cache";
import { hash32, signPayload, verifyPayload } from "./signing";
import { type ArrivalReport, bucketOf, PRE_BUCKET, placeTicket, type RoomState, SETTLE_MS } from "./waiting-room-order";

/**
 * The waiting room at the edge: queue tickets and passes, and the room state read through a one-second
 * micro-cache. Joining and polling never call a Durable Object per buyer: a ticket is signed here, its
 * place is computed here from the room state, and the only WaitingRoom DO call is one coalesced `sync`
 * per isolate per second (which also carries this isolate's arrival counts).
 *
 * Tokens (lib/signing, each purpose its own key):
 * - ticket (`queue-ticket`): `{ e: eventId, u: userId, t: arrival ms, n: nonce, k: arrival bucket,
 *   s: sequence in this isolate's bucket, i: isolate }`; valid {@link TICKET_TTL_MS} after the later of
 *   its arrival and the opening;
 * - pass (`queue-pass`): `{ e, u, exp }`, valid {@link PASS_TTL_MS}; a poll of an admitted ticket issues
 *   a fresh one.
 */

/** Signing purposes. */
const TICKET_PURPOSE = "queue-ticket";
const PASS_PURPOSE = "queue-pass";
/** How long a pass admits its holder to the holds of its event. */
export const PASS_TTL_MS = 10 * 60_000;
/** How long a ticket stays valid after the later of its arrival and the sale's opening. */
export const TICKET_TTL_MS = 6 * 3_600_000;
/** Clock skew tolerated between isolates for a ticket's arrival time. */
const SKEW_MS = 60_000;

const userId = z.string().min(1).max(200);

/** A ticket's signed payload. */
export const ticketPayloadSchema = z.strictObject({
  e: z.string().regex(EVENT_ID),
  u: userId,
  t: z.number().int().nonnegative(),
  n: z.string().regex(/^[0-9a-z]{8,40}$/),
  k: z.number().int().min(PRE_BUCKET),
  s: z.number().int().nonnegative(),
  i: z.string().regex(/^[0-9a-z]{8,32}$/),
});
/** See {@link ticketPayloadSchema}. */
export type QueueTicket = z.output<typeof ticketPayloadSchema>;

/** A pass's signed payload. */
const passPayloadSchema = z.strictObject({ e: z.string().regex(EVENT_ID), u: userId, exp: z.number().int() });

/** Why a token was refused. */
type TokenRefusal = "invalid" | "expired" | "other_user" | "other_event";

/** Result of checking a pass. */
export type PassCheck = { ok: true; expiresAt: number } | { ok: false; reason: TokenRefusal };
/** Result of checking a ticket. */
export type TicketCheck = { ok: true; ticket: QueueTicket } | { ok: false; reason: TokenRefusal };

/** Signs a ticket. */
export const signTicket = (secret: string, ticket: QueueTicket): Promise<string> => signPayload(secret, TICKET_PURPOSE, ticket);

/** Signs a pass for `userId` on `eventId`, valid {@link PASS_TTL_MS} from `now`. */
export async function issuePass(
  secret: string,
  eventId: string,
  userId: string,
  now = Date.now(),
): Promise<{ pass: string; expiresAt: number }> {
  const exp = now + PASS_TTL_MS;
  return { pass: await signPayload(secret, PASS_PURPOSE, { e: eventId, u: userId, exp }), expiresAt: exp };
}

/**
 * Checks a pass: signed by the platform as a pass (not a ticket or anything else), not expired at `now`,
 * issued to `userId` for `eventId`.
 */
export async function checkQueuePass(secret: string, pass: string, userId: string, eventId: string, now = Date.now()): Promise<PassCheck> {
  const parsed = passPayloadSchema.safeParse(await verifyPayload(secret, PASS_PURPOSE, pass));
  if (!parsed.success) return { ok: false, reason: "invalid" };
  const p = parsed.data;
  if (p.e !== eventId) return { ok: false, reason: "other_event" };
  if (p.u !== userId) return { ok: false, reason: "other_user" };
  if (p.exp <= now) return { ok: false, reason: "expired" };
  return { ok: true, expiresAt: p.exp };
}

/**
 * The waiting room's rule for holds: on an event whose room is on, a hold needs the buyer's pass for that
 * event (sent as X-Queue-Pass). Throws 403 `not_admitted` saying what is wrong; passes otherwise.
 */
export async function requireAdmission(
  secret: string,
  event: Pick<EventDoc, "id" | "waitingRoom">,
  userId: string,
  pass: string | undefined,
  now = Date.now(),
): Promise<void> {
  if (!event.waitingRoom.enabled) return;
  if (!pass)
    throw new ApiError(
      "not_admitted",
      "This sale uses a waiting room: join it (POST /v1/events/:id/queue) and send the pass as X-Queue-Pass.",
    );
  const check = await checkQueuePass(secret, pass, userId, event.id, now);
  if (!check.ok) throw new ApiError("not_admitted", `The queue pass is not valid for you and this event (${check.reason}).`);
}

/** True when `pass` admits `userId` to `eventId` at `now` ({@link requireAdmission} with a yes or no). Never throws. */
export async function verifyQueuePass(secret: string, pass: string, userId: string, eventId: string, now = Date.now()): Promise<boolean> {
  return (await checkQueuePass(secret, pass, userId, eventId, now)).ok;
}

/** Checks a ticket: signed as a ticket, for this event and user, not expired, not from the future. */
export async function checkQueueTicket(
  secret: string,
  token: string,
  userId: string,
  event: Pick<EventDoc, "id" | "saleStartsAt">,
  now = Date.now(),
): Promise<TicketCheck> {
  const parsed = ticketPayloadSchema.safeParse(await verifyPayload(secret, TICKET_PURPOSE, token));
  if (!parsed.success) return { ok: false, reason: "invalid" };
  const t = parsed.data;
  if (t.e !== event.id) return { ok: false, reason: "other_event" };
  if (t.u !== userId) return { ok: false, reason: "other_user" };
  if (t.t > now + SKEW_MS) return { ok: false, reason: "invalid" };
  if (Math.max(t.t, Date.parse(event.saleStartsAt)) + TICKET_TTL_MS <= now) return { ok: false, reason: "expired" };
  return { ok: true, ticket: t };
}

// ───────────────────────────── arrival counting (per isolate) ─────────────────────────────

let isolateId: string | undefined;
/**
 * This isolate's id in tickets and arrival reports: random, drawn on first use (workerd forbids random
 * values at module scope, outside a handler).
 */
function isolateIdentity(): string {
  isolateId ??= randomToken(16);
  return isolateId;
}

/** Buckets kept per event for reporting (older ones were reported long ago). */
const KEEP_BUCKETS = 600;

/**
 * Tickets this isolate issued, per event and arrival bucket. Counts are cumulative and only grow, so a
 * report sent twice, or lost and sent again, tells the room the same thing.
 */
export class ArrivalCounter {
  private readonly counts = new Map<string, Map<number, number>>();
  private readonly dirty = new Map<string, Set<number>>();

  /** @param fixedIsolate the id reported with the counts (default: this isolate's, drawn on first use). */
  constructor(private readonly fixedIsolate?: string) {}

  /** The id reported with the counts and written into tickets. */
  get isolate(): string {
    return this.fixedIsolate ?? isolateIdentity();
  }

  /** Numbers the next ticket of `eventId` in bucket `k`: its 0-based sequence `s`. */
  next(eventId: string, k: number): number {
    let m = this.counts.get(eventId);
    if (!m) {
      m = new Map();
      this.counts.set(eventId, m);
    }
    const s = m.get(k) ?? 0;
    m.set(k, s + 1);
    let d = this.dirty.get(eventId);
    if (!d) {
      d = new Set();
      this.dirty.set(eventId, d);
    }
    d.add(k);
    if (m.size > KEEP_BUCKETS) for (const b of m.keys()) if (b !== PRE_BUCKET && b < k - KEEP_BUCKETS && !d.has(b)) m.delete(b);
    return s;
  }

  /** True when `eventId` has counts the room has not been sent. */
  hasPending(eventId: string): boolean {
    return (this.dirty.get(eventId)?.size ?? 0) > 0;
  }

  /** The unsent counts of `eventId` (marked sent; {@link restore} them if the call fails). */
  take(eventId: string): ArrivalReport | null {
    const d = this.dirty.get(eventId);
    const m = this.counts.get(eventId);
    if (!d?.size || !m) return null;
    const counts: [number, number][] = [...d].map((k) => [k, m.get(k) ?? 0]);
    this.dirty.delete(eventId);
    return { isolate: this.isolate, counts };
  }

  /** Marks a report's buckets unsent again. */
  restore(eventId: string, report: ArrivalReport): void {
    let d = this.dirty.get(eventId);
    if (!d) {
      d = new Set();
      this.dirty.set(eventId, d);
    }
    for (const [k] of report.counts) d.add(k);
  }
}

/** The isolate's counter. */
const arrivals = new ArrivalCounter();

// ───────────────────────────── the room state through the micro-cache ─────────────────────────────

/** One second per isolate, coalesced: the WaitingRoom DO sees O(isolates) calls per second, not O(buyers). */
const roomCache = new ReadThroughCache({ ttlMs: 1_000, negativeTtlMs: 1_000, maxEntries: 10_000 });
/** The last good state per event (served for a second after a failed sync). */
const lastGood = new Map<string, { state: RoomState; failedUntil: number }>();
/** Events with a flush of arrival counts scheduled in this isolate. */
const flushing = new Set<string>();
/** After a join, counts reach the room within this even if this isolate gets no further request. */
const FLUSH_DELAY_MS = 1_050;

/** What reading the room needs. */
interface RoomDeps {
  rooms: Env["WAITING_ROOM"];
  waitUntil: (p: Promise<unknown>) => void;
  /** Arrival counter (default: the isolate's). */
  counter?: ArrivalCounter;
}

/** The event fields sent to the room. */
const roomEvent = (event: EventRouting): EventRouting => ({
  id: event.id,
  sections: event.sections,
  waitingRoom: event.waitingRoom,
  saleStartsAt: event.saleStartsAt,
});

/**
 * The room state of `event`, at most about a second old. The fill (one per isolate per second, misses
 * coalesced) sends this isolate's unsent arrival counts with it. If the room cannot be reached, the last
 * state is served for a second before trying again; with none, 503 `overloaded`.
 */
async function readRoomState(deps: RoomDeps, event: EventRouting): Promise<RoomState> {
  const counter = deps.counter ?? arrivals;
  const known = lastGood.get(event.id);
  if (known && known.failedUntil > Date.now()) return known.state;
  try {
    const { value } = await roomCache.get({
      key: `room:${event.id}`,
      cacheUrl: "",
      edgeTtlSeconds: 1,
      waitUntil: deps.waitUntil,
      kv: async () => null,
      origin: async () => {
        const report = counter.take(event.id);
        metric.waitingRoomDoCalls.inc({ method: "sync" });
        const t0 = Date.now();
        try {
          const state = await deps.rooms.get(deps.rooms.idFromName(event.id)).sync(roomEvent(event), report);
          return JSON.stringify(state);
        } catch (err) {
          if (report) counter.restore(event.id, report);
          throw err;
        } finally {
          metric.doCallDurationMs.observe({ object: "waiting_room", method: "sync" }, Date.now() - t0);
        }
      },
    });
    if (!value) throw new Error("room state missing");
    const state = parsedBody(value, (body) => JSON.parse(body) as RoomState);
    if (lastGood.size > 10_000) lastGood.clear();
    lastGood.set(event.id, { state, failedUntil: 0 });
    return state;
  } catch (err) {
    log.warn("waiting room unreachable", { eventId: event.id, error: String(err) });
    if (known) {
      known.failedUntil = Date.now() + 1_000;
      return known.state;
    }
    throw new ApiError("overloaded", "The waiting room is busy; retry shortly.", { retryAfterSeconds: 2 });
  }
}

/**
 * Makes sure this isolate's counts for `eventId` reach the room within about a second even if no other
 * request arrives here (the bucket must be counted before the watermark may enter it).
 */
function scheduleFlush(deps: RoomDeps, event: EventRouting): void {
  if (flushing.has(event.id)) return;
  flushing.add(event.id);
  deps.waitUntil(
    (async () => {
      try {
        await new Promise((r) => setTimeout(r, FLUSH_DELAY_MS));
        if ((deps.counter ?? arrivals).hasPending(event.id)) await readRoomState(deps, event);
      } catch {
        // readRoomState logged it; the next request or flush retries (counts are kept until sent).
      } finally {
        flushing.delete(event.id);
      }
    })(),
  );
}

/** Forgets cached room states in this isolate (tests). */
export function clearRoomCache(): void {
  roomCache.clear();
  lastGood.clear();
}

// ───────────────────────────── join and poll ─────────────────────────────

/** The body of `POST`/`GET /v1/events/:id/queue`. */
export interface QueueStatus {
  ticket: string;
  state: "waiting" | "admitted";
  position: number;
  estimatedWaitSeconds: number;
  pass?: string;
  passExpiresAt?: string;
  soldOut?: true;
  pollAfterSeconds: number;
}

/**
 * Where each buyer's one pre-sale ticket per event is kept (the buyer's CustomerLedger): joining again
 * before the opening, even without the ticket, answers the same ticket, so one account holds one place in
 * the shuffle however often it joins.
 */
interface PreQueueTickets {
  /** The kept ticket of `userId` for `eventId`, or null. */
  get(userId: string, eventId: string): Promise<string | null>;
  /** Keeps `ticket` unless one is kept already; returns the kept one. */
  claim(userId: string, eventId: string, ticket: string, expiresAt: number): Promise<string>;
}

/** What join and poll need besides the room. */
export interface QueueDeps extends RoomDeps {
  secret: string;
  preQueue: PreQueueTickets;
}

/** The status of a valid ticket: its place from the room state, and a pass once admitted. */
async function statusOf(
  deps: QueueDeps,
  event: EventRouting,
  token: string,
  ticket: QueueTicket,
  now: number,
  room?: RoomState,
): Promise<QueueStatus> {
  if (!event.waitingRoom.enabled) return admittedStatus(deps.secret, event.id, ticket.u, token, now);
  const state = room ?? (await readRoomState(deps, event));
  const place = placeTicket(ticket, state, now);
  if (place.admitted) {
    const status = await admittedStatus(deps.secret, event.id, ticket.u, token, now);
    return state.soldOut ? { ...status, soldOut: true } : status;
  }
  const status: QueueStatus = {
    ticket: token,
    state: "waiting",
    position: place.position,
    estimatedWaitSeconds: place.estimatedWaitSeconds,
    pollAfterSeconds: pollAfter(state, ticket, place.position, now),
  };
  return state.soldOut ? { ...status, soldOut: true, pollAfterSeconds: 30 } : status;
}

/**
 * When to poll again. After the opening: a quarter of the time the tickets ahead take at the ceiling
 * rate (2‥30 s): optimistic, so that a buyer learns of the admission within a couple of seconds even
 * while the rate climbs, and admitted buyers reach the inventory at the admission rate, not in bunches.
 * Before it: just after the pre-queue is drawn (spread over two seconds by the ticket's nonce), since
 * until then there is nothing new to learn.
 */
function pollAfter(state: RoomState, ticket: QueueTicket, position: number, now: number): number {
  const drawnAt = state.openAt + SETTLE_MS;
  if (state.opened || drawnAt <= now) return Math.min(30, Math.max(2, Math.round(position / (Math.max(state.ceiling, 1) / 60) / 4)));
  return Math.min(30, Math.ceil((drawnAt - now) / 1_000) + (hash32(ticket.n) % 3));
}

async function admittedStatus(secret: string, eventId: string, userId: string, ticket: string, now: number): Promise<QueueStatus> {
  const { pass, expiresAt } = await issuePass(secret, eventId, userId, now);
  return {
    ticket,
    state: "admitted",
    position: 0,
    estimatedWaitSeconds: 0,
    pass,
    passExpiresAt: new Date(expiresAt).toISOString(),
    pollAfterSeconds: Math.floor(PASS_TTL_MS / 2_000),
  };
}

/** Maps a refused ticket to its problem. */
function ticketRefused(reason: TokenRefusal): ApiError {
  const detail: Record<TokenRefusal, string> = {
    invalid: "This queue ticket is not valid. Join the queue again.",
    expired: "This queue ticket has expired. Join the queue again.",
    other_user: "This queue ticket was issued to another user.",
    other_event: "This queue ticket is for another event.",
  };
  return new ApiError("not_admitted", detail[reason]);
}

/**
 * Joins the queue of `event` as `userId` at `now`: signs a ticket (arrival bucket, this isolate's
 * sequence in it) and answers its place. A valid ticket of the same buyer and event in `existing` is
 * kept instead (a double click does not lose the place); anything else there is ignored. With the
 * waiting room off, the buyer is admitted at once.
 */
export async function joinQueue(
  deps: QueueDeps,
  event: EventRouting,
  userId: string,
  now = Date.now(),
  existing?: string,
): Promise<QueueStatus> {
  if (existing) {
    const kept = await checkQueueTicket(deps.secret, existing, userId, event, now);
    if (kept.ok) return statusOf(deps, event, existing, kept.ticket, now);
  }
  const counter = deps.counter ?? arrivals;
  const enabled = event.waitingRoom.enabled;
  const room = enabled ? await readRoomState(deps, event) : undefined;
  // Once the room opened, its opening is the one that counts (the event's may have been edited since).
  const openAt = room?.opened ? room.openAt : Date.parse(event.saleStartsAt);
  const k = now < openAt ? PRE_BUCKET : bucketOf(now);
  // Before the opening every ticket is one draw in the shuffle: a buyer gets one, however often they join.
  const preSale = enabled && k === PRE_BUCKET;
  if (preSale) {
    const kept = await keptPreQueueTicket(deps, event, userId, now);
    if (kept) return statusOf(deps, event, kept.token, kept.ticket, now, room);
  }
  const ticket: QueueTicket = {
    e: event.id,
    u: userId,
    t: now,
    n: randomToken(16),
    k,
    s: enabled ? counter.next(event.id, k) : 0,
    i: counter.isolate,
  };
  const token = await signTicket(deps.secret, ticket);
  if (enabled) scheduleFlush(deps, event);
  if (preSale) {
    // Two joins racing in two isolates: both answer the ticket kept first (the other one's count is a
    // place nobody holds; it costs the room one admission, never a buyer an extra draw).
    const expiresAt = Math.max(now, openAt) + TICKET_TTL_MS;
    const kept = await ledgerCall(() => deps.preQueue.claim(userId, event.id, token, expiresAt));
    if (kept !== token) {
      const checked = await checkQueueTicket(deps.secret, kept, userId, event, now);
      if (checked.ok) return statusOf(deps, event, kept, checked.ticket, now, room);
    }
  }
  return statusOf(deps, event, token, ticket, now, room);
}

/** The buyer's kept pre-sale ticket for `event`, when it is still valid. */
async function keptPreQueueTicket(
  deps: QueueDeps,
  event: EventRouting,
  userId: string,
  now: number,
): Promise<{ token: string; ticket: QueueTicket } | null> {
  const token = await ledgerCall(() => deps.preQueue.get(userId, event.id));
  if (!token) return null;
  const checked = await checkQueueTicket(deps.secret, token, userId, event, now);
  return checked.ok ? { token, ticket: checked.ticket } : null;
}

/** A call to the buyer's ledger; an unreachable one is 503 `overloaded` (the join may be retried). */
async function ledgerCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApiError) throw err;
    log.warn("customer ledger unreachable on queue join", { error: String(err) });
    throw new ApiError("overloaded", "The waiting room is busy; retry shortly.", { retryAfterSeconds: 1 });
  }
}

/** The current status of a ticket; 403 `not_admitted` when it is forged, altered, expired or someone else's. */
export async function pollQueue(
  deps: QueueDeps,
  event: EventRouting,
  userId: string,
  token: string,
  now = Date.now(),
): Promise<QueueStatus> {
  const checked = await checkQueueTicket(deps.secret, token, userId, event, now);
  if (!checked.ok) throw ticketRefused(checked.reason);
  return statusOf(deps, event, token, checked.ticket, now);
}

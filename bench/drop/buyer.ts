/**
 * One buyer of the drop: arrives at its time, reads the event (and the seat map if it wants a seat),
 * joins the waiting room, polls when the server says, holds (free seats from the seat map, or 1–4 GA
 * places), pays with its card (most succeed; some are declined and retry with another card; some are slow;
 * some walk away and let the hold expire), then reads its order. Every retry follows Retry-After.
 * Decisions come from the buyer's own seeded random source, so a seed gives the same buyers.
 */

import { mulberry32 } from "../lib/zipf.ts";
import type { DropClient, Send, Sent } from "./client.ts";
import type { Seen } from "./history.ts";

/** How a buyer pays. */
type PayPlan = "ok" | "decline_then_ok" | "slow" | "walk_away" | "greedy";

/** What a buyer is, drawn from the seed. */
export interface BuyerPlan {
  name: string;
  /** ms since the origin. */
  arriveAt: number;
  wantsSeat: boolean;
  quantity: number;
  pay: PayPlan;
  /** Per-buyer random source (seat choice, jitter). */
  rng: () => number;
}

/** How the buyer ended. */
export type Outcome =
  | "paid"
  | "sold_out"
  | "walked_away"
  | "declined"
  | "hold_expired"
  | "gave_up"
  | "not_admitted"
  | "limit_refused"
  | "deadline";

/** The event as buyers know it. */
export interface SaleContext {
  client: DropClient;
  eventId: string;
  seatedSection: string;
  gaSection: string;
  perCustomerLimit: number;
  /** Token for a buyer (signed locally, or from the dev-token route). */
  token: (buyer: string) => Promise<string | null>;
  /** ms since the origin after which buyers stop. */
  deadline: number;
  now: () => number;
  /** Waits `ms` on the drop's one timer (scheduler.ts). */
  sleep: (ms: number) => Promise<void>;
  live: { arrived: number; joined: number; admitted: number; held: number; paid: number; tickets: number; soldOut: boolean };
}

/** A standard normal draw (Box–Muller). */
const normal = (rng: () => number) => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());

/**
 * The buyers of a drop: an open arrival model (arrival times fixed in advance, whatever the server does)
 * with most buyers in the minute around the opening: 20 % early (uniform before it), 65 % around it
 * (normal, σ 12 s), 15 % late (uniform over the 45 s after it).
 */
export function planBuyers(n: number, seed: number, openAt: number, lateMs = 45_000): BuyerPlan[] {
  const rng = mulberry32(seed);
  const plans: BuyerPlan[] = [];
  for (let i = 0; i < n; i++) {
    const r = rng();
    let at: number;
    if (r < 0.2) at = rng() * openAt;
    else if (r < 0.85) at = openAt + normal(rng) * 12_000;
    else at = openAt + rng() * lateMs;
    at = Math.min(openAt + lateMs, Math.max(0, at));
    const q = rng();
    const p = rng();
    plans.push({
      name: `b${String(i).padStart(5, "0")}`,
      arriveAt: Math.round(at),
      wantsSeat: rng() < 0.4,
      quantity: q < 0.3 ? 1 : q < 0.7 ? 2 : q < 0.85 ? 3 : 4,
      pay: p < 0.78 ? "ok" : p < 0.86 ? "decline_then_ok" : p < 0.92 ? "slow" : p < 0.98 ? "walk_away" : "greedy",
      rng: mulberry32((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0),
    });
  }
  return plans.sort((a, b) => a.arriveAt - b.arriveAt);
}

/**
 * Tries of one step: answers that say "later" (429, 503, 409 idempotency_conflict), timeouts and lost
 * connections are retried until the sale's deadline (a killed server may take half a minute to come
 * back), at most this many times.
 */
const MAX_TRIES = 60;

interface HoldBody {
  hold: { id: string; sectionId: string; seats: string[]; quantity: number; total: number; expiresAt: string };
}
interface OrderBody {
  order: { id: string; sectionId: string; seats: string[]; quantity: number; total: number; status: string; tickets: unknown[] };
}
interface QueueBody {
  ticket: string;
  state: "waiting" | "admitted";
  position: number;
  pass?: string;
  soldOut?: boolean;
  pollAfterSeconds: number;
}

const seenHold = (b: Record<string, unknown>): Seen => {
  const h = (b as unknown as HoldBody).hold;
  return { holdId: h.id, sectionId: h.sectionId, seats: h.seats, quantity: h.quantity, total: h.total };
};
const seenOrder = (b: Record<string, unknown>): Seen => {
  const o = (b as unknown as OrderBody).order;
  return {
    orderId: o.id,
    sectionId: o.sectionId,
    seats: o.seats,
    quantity: o.quantity,
    total: o.total,
    orderStatus: o.status,
    tickets: o.tickets.length,
  };
};
const seenQueue = (b: Record<string, unknown>): Seen => {
  const q = b as unknown as QueueBody;
  return { state: q.state, position: q.position, ...(q.soldOut ? { soldOut: true } : {}) };
};

/** Runs one buyer, from its arrival (the caller starts it then, or later from its backlog), to the end; returns how it ended. */
export async function runBuyer(plan: BuyerPlan, sale: SaleContext): Promise<Outcome> {
  const { client, sleep } = sale;
  const b = plan.name;
  const past = () => sale.now() >= sale.deadline;

  /** Sends with retries on "later" answers and lost connections, honouring Retry-After. */
  const attempt = async <T>(s: Send, opts: { freshKey?: () => string } = {}): Promise<Sent<T>> => {
    let key = s.idempotencyKey;
    for (let n = 1; ; n++) {
      const sent = await client.send<T>({ ...s, attempt: n, ...(key ? { idempotencyKey: key } : {}) });
      const r = sent.rec;
      const later = r.status === 429 || r.status === 503 || (r.status === 409 && r.code === "idempotency_conflict");
      if ((!later && r.status !== undefined) || n >= MAX_TRIES || past()) return sent;
      // Retry-After when the server gave one; after a timeout or a lost connection, 1–2 s (the request may
      // still be running on the server: an immediate retry would only add to its queue).
      const wait = r.retryAfter !== undefined ? r.retryAfter * 1000 : 1000 * Math.min(2, n);
      await sleep(Math.min(wait * (1 + 0.2 * plan.rng()), sale.deadline - sale.now()));
      // A 5xx is not kept under its Idempotency-Key: a new key is a new attempt; after a timeout or a lost
      // connection the same key finds the first attempt's answer if it got one.
      if (r.status === 503 && opts.freshKey) key = opts.freshKey();
    }
  };

  if (past()) return "deadline";
  const token = await sale.token(b);
  if (!token) return "gave_up";
  const ev = await attempt({ buyer: b, step: "event", method: "GET", path: `/v1/events/${sale.eventId}`, token, discardBody: true });
  if (ev.rec.status !== 200) return "gave_up";
  const seatMap = async (look = false) => {
    const r = await attempt<{ seats: { id: string; status: string }[] }>({
      buyer: b,
      step: "seatmap",
      method: "GET",
      path: `/v1/events/${sale.eventId}/sections/${sale.seatedSection}/seats`,
      token,
      discardBody: look,
      urgent: !look,
    });
    return r.body?.seats ?? null;
  };
  // A first look at the map before queueing (the buyer picks its seats after admission, from a fresh one).
  if (plan.wantsSeat) await seatMap(true);

  // ── the waiting room ──
  const join = await attempt<QueueBody>({
    buyer: b,
    step: "join",
    method: "POST",
    path: `/v1/events/${sale.eventId}/queue`,
    token,
    seen: seenQueue,
  });
  if (!join.body) return "gave_up";
  sale.live.joined++;
  let q: QueueBody = join.body;
  while (q.state !== "admitted") {
    if (q.soldOut) return "sold_out";
    await sleep(Math.min(q.pollAfterSeconds * 1000, sale.deadline - sale.now()));
    if (past()) return "deadline";
    const poll = await attempt<QueueBody>({
      buyer: b,
      step: "poll",
      method: "GET",
      path: `/v1/events/${sale.eventId}/queue`,
      token,
      headers: { "x-queue-ticket": q.ticket },
      seen: seenQueue,
    });
    if (!poll.body) return poll.rec.status === 403 ? "not_admitted" : "gave_up";
    q = poll.body;
  }
  sale.live.admitted++;
  const pass = q.pass ?? "";

  // ── hold ──
  const hold = async (section: string, want: number, seats?: string[]) =>
    attempt<HoldBody>({
      buyer: b,
      step: "hold",
      method: "POST",
      path: `/v1/events/${sale.eventId}/holds`,
      token,
      urgent: true,
      headers: { "x-queue-pass": pass },
      json: seats ? { sectionId: section, seats } : { sectionId: section, quantity: want },
      idempotencyKey: `${b}-hold-${Math.floor(plan.rng() * 1e9)}`,
      seen: seenHold,
    });
  const placeHold = async (want: number): Promise<HoldBody["hold"] | "sold_out" | "limit" | null> => {
    let sections = plan.wantsSeat ? [sale.seatedSection, sale.gaSection] : [sale.gaSection, sale.seatedSection];
    for (let tries = 0; tries < 4 && sections.length && !past(); tries++) {
      const section = sections[0] as string;
      let seats: string[] | undefined;
      if (section === sale.seatedSection) {
        const map = await seatMap();
        const free = (map ?? []).filter((s) => s.status === "available");
        if (free.length >= want) {
          const startAt = Math.floor(plan.rng() * (free.length - want + 1));
          seats = free.slice(startAt, startAt + want).map((s) => s.id);
        } else if (free.length === 0) {
          sections = sections.slice(1);
          continue;
        } else seats = free.map((s) => s.id).slice(0, want);
      }
      const r = await hold(section, want, seats);
      if (r.body) return r.body.hold;
      if (r.rec.code === "limit_exceeded") return "limit";
      if (r.rec.code === "sold_out") sections = sections.slice(1);
      else if (r.rec.code === "seats_unavailable") {
        if (section === sale.gaSection && want > 1) want = 1;
      } else return null;
    }
    return sections.length ? null : "sold_out";
  };
  const got = await placeHold(plan.quantity);
  if (got === "sold_out") return "sold_out";
  if (got === "limit") return "limit_refused";
  if (!got) return "gave_up";
  sale.live.held++;
  if (plan.pay === "walk_away") return "walked_away";

  // ── pay ──
  const payKey = () => `${b}-pay-${Math.floor(plan.rng() * 1e9)}`;
  const pay = (holdId: string, card: string) =>
    attempt<OrderBody>(
      {
        buyer: b,
        step: "pay",
        method: "POST",
        path: "/v1/orders",
        token,
        urgent: true,
        json: { holdId, payment: { method: "sandbox", token: card } },
        idempotencyKey: payKey(),
        payToken: card,
        seen: seenOrder,
      },
      { freshKey: payKey },
    );
  const checkout = async (h: HoldBody["hold"]): Promise<OrderBody["order"] | Outcome> => {
    const cards = plan.pay === "decline_then_ok" ? ["tok_decline", "tok_ok"] : plan.pay === "slow" ? ["tok_slow"] : ["tok_ok"];
    for (const card of cards) {
      const r = await pay(h.id, card);
      if (r.body) return r.body.order;
      if (r.rec.code === "payment_declined") continue;
      if (r.rec.code === "hold_expired") return "hold_expired";
      return "gave_up";
    }
    return "declined";
  };
  const order = await checkout(got);
  if (typeof order === "string") return order;
  sale.live.paid++;
  sale.live.tickets += order.quantity;
  await attempt({ buyer: b, step: "order", method: "GET", path: `/v1/orders/${order.id}`, token, seen: seenOrder, urgent: true });

  // A greedy buyer tries to buy past the per-customer limit; the ledger must refuse it.
  if (plan.pay === "greedy" && !past()) {
    const over = sale.perCustomerLimit - order.quantity + 1;
    const more = await placeHold(Math.min(4, over));
    if (more && typeof more !== "string") {
      sale.live.held++;
      const second = await checkout(more);
      if (typeof second !== "string") {
        sale.live.paid++;
        sale.live.tickets += second.quantity;
      }
    }
  }
  return "paid";
}

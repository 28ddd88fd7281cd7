import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { WaitingRoom } from "../../durable-objects/waiting-room";
import { type EventDoc, eventSchema } from "../../lib/event-schema";
import type { InventoryReport } from "../../lib/inventory-types";
import { metrics } from "../../lib/metrics";
import { b64url, fromB64url, signPayload } from "../../lib/signing";
import { clearRoomCache, type QueueStatus, signTicket, ticketPayloadSchema, verifyQueuePass } from "../../lib/waiting-room";
import { SETTLE_MS } from "../../lib/waiting-room-order";
import { call, createEvent, type Problem, tokenFor } from "../helpers";

let organizer: string;
const tokens = new Map<string, string>();
async function buyer(name: string): Promise<string> {
  let t = tokens.get(name);
  if (!t) {
    t = await tokenFor(name, "buyer");
    tokens.set(name, t);
  }
  return t;
}

beforeAll(async () => {
  organizer = await tokenFor("org-queue", "organizer");
});

const join = (eventId: string, token: string, headers: Record<string, string> = {}) =>
  call(`/v1/events/${eventId}/queue`, { method: "POST", token, headers });
const poll = (eventId: string, token: string, ticket: string) =>
  call(`/v1/events/${eventId}/queue`, { token, headers: { "X-Queue-Ticket": ticket } });

async function status(res: Response, code = 202): Promise<QueueStatus> {
  expect(res.status, await res.clone().text()).toBe(code);
  return (await res.json()) as QueueStatus;
}

const room = (eventId: string) => env.WAITING_ROOM.get(env.WAITING_ROOM.idFromName(eventId));

/** Runs the event's room one tick at room time `ms`, then forgets this isolate's cached room state. */
async function tickRoom(eventId: string, ms: number): Promise<void> {
  const stub = room(eventId);
  await runInDurableObject(stub, (r: WaitingRoom) => {
    r.clock = () => ms;
  });
  await runDurableObjectAlarm(stub);
  clearRoomCache();
}

/** The event document as the catalog serves it. */
async function eventDoc(id: string): Promise<EventDoc> {
  const res = await call(`/v1/events/${id}`);
  return eventSchema.parse(((await res.json()) as { event: unknown }).event);
}

const roomCalls = () => metrics.sum("breakwater_waiting_room_do_calls_total", { method: "sync" });

const waitingRoomEvent = (over: Record<string, unknown> = {}) =>
  createEvent(organizer, { waitingRoom: { enabled: true, admitPerMinute: 120 }, ...over });

describe("POST/GET /v1/events/:id/queue (happy)", () => {
  it("queues buyers, then admits them in arrival order with passes bound to buyer and event", async () => {
    const ev = await waitingRoomEvent();
    const names = Array.from({ length: 10 }, (_, i) => `fifo-${i}`);
    const tickets: string[] = [];
    for (const name of names) {
      const s = await status(await join(ev.id, await buyer(name)));
      expect(s).toMatchObject({ state: "waiting" });
      expect(s.pass).toBeUndefined();
      expect(s.position).toBeGreaterThanOrEqual(0);
      // Arrivals are admitted only once their second is surely counted everywhere.
      expect(s.estimatedWaitSeconds).toBeGreaterThanOrEqual(SETTLE_MS / 1_000);
      expect(s.pollAfterSeconds).toBeGreaterThanOrEqual(2);
      tickets.push(s.ticket);
    }
    clearRoomCache();
    const polled = await status(await poll(ev.id, await buyer(names[9] as string), tickets[9] as string), 200);
    expect(polled).toMatchObject({ ticket: tickets[9], state: "waiting", position: 9 });

    const admittedIn = new Map<string, number>();
    let now = Date.now() + SETTLE_MS + 2_000;
    for (let round = 0; round < 30 && admittedIn.size < names.length; round++) {
      await tickRoom(ev.id, now);
      now += 1_000;
      for (const [j, name] of names.entries()) {
        if (admittedIn.has(name)) continue;
        const s = await status(await poll(ev.id, await buyer(name), tickets[j] as string), 200);
        if (s.state === "admitted") {
          admittedIn.set(name, round);
          expect(s.position).toBe(0);
          expect(s.pass).toEqual(expect.any(String));
          expect(await verifyQueuePass(env.SIGNING_SECRET, s.pass ?? "", name, ev.id)).toBe(true);
          expect(await verifyQueuePass(env.SIGNING_SECRET, s.pass ?? "", "someone-else", ev.id)).toBe(false);
          expect(await verifyQueuePass(env.SIGNING_SECRET, s.pass ?? "", name, "evt_00000000000000000000")).toBe(false);
        }
      }
    }
    expect(admittedIn.size).toBe(names.length);
    const rounds = names.map((n) => admittedIn.get(n) as number);
    expect(rounds).toEqual([...rounds].sort((a, b) => a - b));
    // 120/min starts at 60/min: about one a second, not all at once.
    expect(new Set(rounds).size).toBeGreaterThan(3);
  });

  it("keeps a buyer's place when they join again with their ticket", async () => {
    const ev = await waitingRoomEvent();
    const t = await buyer("rejoin");
    const first = await status(await join(ev.id, t));
    const again = await status(await join(ev.id, t, { "X-Queue-Ticket": first.ticket }));
    expect(again.ticket).toBe(first.ticket);
    const other = await status(await join(ev.id, await buyer("rejoin-2"), { "X-Queue-Ticket": first.ticket }));
    expect(other.ticket).not.toBe(first.ticket);
    const garbage = await status(await join(ev.id, t, { "X-Queue-Ticket": "garbage" }));
    expect(garbage.ticket).not.toBe(first.ticket);
  });

  it("admits at once, with a pass and no waiting-room call, when the event's room is off", async () => {
    const ev = await createEvent(organizer);
    const before = roomCalls();
    const s = await status(await join(ev.id, await buyer("no-room")));
    expect(s).toMatchObject({ state: "admitted", position: 0, estimatedWaitSeconds: 0 });
    expect(await verifyQueuePass(env.SIGNING_SECRET, s.pass ?? "", "no-room", ev.id)).toBe(true);
    expect((await status(await poll(ev.id, await buyer("no-room"), s.ticket), 200)).state).toBe("admitted");
    expect(roomCalls()).toBe(before);
  });

  it("gives one account one pre-sale place however often it joins, with or without its ticket", async () => {
    const ev = await waitingRoomEvent({ saleStartsAt: new Date(Date.now() + 3_600_000).toISOString() });
    for (const name of ["fair-1", "fair-2", "fair-3"]) await status(await join(ev.id, await buyer(name)));
    const greedy = await buyer("greedy");
    const first = await status(await join(ev.id, greedy));
    const again: string[] = [];
    for (let i = 0; i < 8; i++) again.push((await status(await join(ev.id, greedy))).ticket);
    expect(new Set(again)).toEqual(new Set([first.ticket]));
    // Concurrent joins from the same account answer one ticket too.
    const concurrent = await Promise.all(Array.from({ length: 8 }, async () => (await status(await join(ev.id, greedy))).ticket));
    expect(new Set(concurrent)).toEqual(new Set([first.ticket]));
    // Another account's ticket is not shared, and the kept one is bound to its event.
    expect((await status(await join(ev.id, await buyer("fair-1")))).ticket).not.toBe(first.ticket);
    const other = await waitingRoomEvent({ saleStartsAt: new Date(Date.now() + 3_600_000).toISOString() });
    expect((await status(await join(other.id, greedy))).ticket).not.toBe(first.ticket);
    // The pre-queue counts four buyers, not 3 + 17 joins.
    clearRoomCache();
    const polled = await status(await poll(ev.id, greedy, first.ticket), 200);
    expect(polled).toMatchObject({ state: "waiting", position: 4 });
  });

  it("shuffles buyers who joined before the opening, fairly and once", async () => {
    const openAt = Date.now() + 3_600_000;
    const ev = await waitingRoomEvent({ saleStartsAt: new Date(openAt).toISOString() });
    const names = Array.from({ length: 24 }, (_, i) => `pre-${i}`);
    const tickets: string[] = [];
    for (const name of names) tickets.push((await status(await join(ev.id, await buyer(name)))).ticket);
    clearRoomCache();
    const before = await status(await poll(ev.id, await buyer(names[0] as string), tickets[0] as string), 200);
    // Before the opening: everyone waits; the position is the pre-queue's size, the wait at least until the opening.
    expect(before).toMatchObject({ state: "waiting", position: 24 });
    expect(before.estimatedWaitSeconds).toBeGreaterThanOrEqual(3_500);

    const admittedIn = new Map<string, number>();
    const positions = new Map<string, number>();
    let now = openAt + SETTLE_MS;
    for (let round = 0; round < 40 && admittedIn.size < names.length; round++) {
      await tickRoom(ev.id, now);
      now += 1_000;
      for (const [j, name] of names.entries()) {
        if (admittedIn.has(name)) continue;
        const s = await status(await poll(ev.id, await buyer(name), tickets[j] as string), 200);
        if (s.state === "admitted") admittedIn.set(name, round);
        else if (round === 0) positions.set(name, s.position);
      }
    }
    expect(admittedIn.size).toBe(names.length);
    const rounds = names.map((n) => admittedIn.get(n) as number);
    expect(rounds).not.toEqual([...rounds].sort((a, b) => a - b));
    // Positions drawn at the opening: distinct places, consistent with the order of admission. The room
    // starts at about one admission a second, so most buyers are still waiting in round 0: the pairs
    // compared below are many, never none.
    const waiting = [...positions.entries()];
    expect(waiting.length).toBeGreaterThanOrEqual(names.length / 2);
    expect(new Set(waiting.map(([, p]) => p)).size).toBe(waiting.length);
    let compared = 0;
    for (const [a, pa] of waiting)
      for (const [b, pb] of waiting)
        if (pa < pb) {
          expect(admittedIn.get(a)).toBeLessThanOrEqual(admittedIn.get(b) as number);
          compared++;
        }
    expect(compared).toBe((waiting.length * (waiting.length - 1)) / 2);
  });

  it("asks pre-sale buyers to poll again just after the opening, not sooner and not much later", async () => {
    const ev = await waitingRoomEvent({ saleStartsAt: new Date(Date.now() + 10_000).toISOString() });
    const s = await status(await join(ev.id, await buyer("pre-poll")));
    expect(s.state).toBe("waiting");
    expect(s.pollAfterSeconds).toBeGreaterThanOrEqual(10);
    expect(s.pollAfterSeconds).toBeLessThanOrEqual(10 + SETTLE_MS / 1_000 + 3);
  });

  it("says so when the event is sold out, and admits nobody else", async () => {
    const ev = await waitingRoomEvent({ sections: [{ id: "tiny", name: "Tiny", kind: "ga", price: 100, capacity: 2, shards: 1 }] });
    const t = await buyer("late-buyer");
    const s = await status(await join(ev.id, t));
    const now = Date.now();
    const report: InventoryReport = {
      sectionId: "tiny",
      shard: 0,
      at: now,
      capacity: 2,
      available: 0,
      held: 0,
      sold: 2,
      health: { holdLatencyP95Ms: 1, holdsPerSecond: 1, overloads: 0, activeHolds: 0 },
    };
    await room(ev.id).reportInventory(await eventDoc(ev.id), report);
    for (let i = 0; i < 4; i++) await tickRoom(ev.id, now + SETTLE_MS + 2_000 + i * 1_000);
    const after = await status(await poll(ev.id, t, s.ticket), 200);
    expect(after).toMatchObject({ state: "waiting", soldOut: true });
    expect(after.pass).toBeUndefined();
  });
});

describe("waiting room load on the WaitingRoom DO", () => {
  it("costs far less than one DO call per joined buyer: one coalesced sync per isolate per second", async () => {
    const ev = await waitingRoomEvent();
    const names = Array.from({ length: 150 }, (_, i) => `load-${i}`);
    const buyerTokens = await Promise.all(names.map((n) => buyer(n)));
    clearRoomCache();
    const before = roomCalls();
    const joined = await Promise.all(buyerTokens.map(async (t) => status(await join(ev.id, t))));
    const afterJoins = roomCalls() - before;
    const polled = await Promise.all(joined.map(async (s, j) => status(await poll(ev.id, buyerTokens[j] as string, s.ticket), 200)));
    const calls = roomCalls() - before;
    console.log(
      `waiting room DO calls: ${calls} for ${names.length} joins + ${polled.length} polls (${(calls / names.length).toFixed(3)} per joined buyer)`,
    );
    expect(afterJoins).toBeGreaterThanOrEqual(1);
    expect(calls).toBeLessThanOrEqual(4);
    expect(calls / names.length).toBeLessThan(0.05);
    // The counts reached the room with those few calls: it knows every ticket.
    clearRoomCache();
    const last = await status(await poll(ev.id, buyerTokens[0] as string, joined[0]?.ticket ?? ""), 200);
    expect(last.state).toBe("waiting");
    const state = await room(ev.id).sync(await eventDoc(ev.id), null);
    const queued = state.queue.totals.reduce((a, b) => a + b, 0) + state.queue.tail;
    expect(queued + state.admitted - state.queue.admittedInFirst).toBe(names.length);
  });
});

describe("GET /v1/events/:id/queue (errors and security)", () => {
  /** Replaces fields of a token's payload, keeping its MAC. */
  const alter = (token: string, patch: Record<string, unknown>) => {
    const [body, mac] = token.split(".") as [string, string];
    const payload = JSON.parse(new TextDecoder().decode(fromB64url(body))) as Record<string, unknown>;
    return `${b64url(new TextEncoder().encode(JSON.stringify({ ...payload, ...patch })))}.${mac}`;
  };
  const problem = async (res: Response, code: number) => {
    expect(res.status).toBe(code);
    expect(res.headers.get("Content-Type")).toContain("application/problem+json");
    return (await res.json()) as Problem;
  };

  it("refuses forged, altered, expired, transferred and other-event tickets with 403 not_admitted", async () => {
    const saleStartsAt = new Date(Date.now() - 8 * 3_600_000).toISOString();
    const ev = await waitingRoomEvent({ saleStartsAt });
    const other = await waitingRoomEvent();
    const alice = await buyer("sec-alice");
    const { ticket } = await status(await join(ev.id, alice));
    const payload = JSON.parse(new TextDecoder().decode(fromB64url(ticket.split(".")[0] as string))) as Record<string, unknown>;

    const cases: [string, string, string, string][] = [
      ["forged", ev.id, alice, await signPayload("not-the-platform-secret-0123456789", "queue-ticket", payload)],
      ["altered arrival", ev.id, alice, alter(ticket, { t: 0, k: -1, s: 0 })],
      ["altered owner", ev.id, await buyer("sec-mallory"), alter(ticket, { u: "sec-mallory" })],
      ["transferred", ev.id, await buyer("sec-mallory"), ticket],
      ["other event", other.id, alice, ticket],
      [
        "expired",
        ev.id,
        alice,
        await signTicket(env.SIGNING_SECRET, { ...ticketPayloadSchema.parse(payload), t: Date.now() - 7 * 3_600_000 }),
      ],
      ["a pass", ev.id, alice, await signPayload(env.SIGNING_SECRET, "queue-pass", { e: ev.id, u: "sec-alice", exp: Date.now() + 60_000 })],
      ["truncated", ev.id, alice, ticket.slice(0, -3)],
    ];
    for (const [what, eventId, token, t] of cases) {
      const p = await problem(await poll(eventId, token, t), 403);
      expect(p.code, what).toBe("not_admitted");
    }
    // The genuine ticket still works for its owner.
    expect((await status(await poll(ev.id, alice, ticket), 200)).state).toBe("waiting");
  });

  it("answers 400 for a missing or malformed ticket, 401 without a token, 403 for organizers, 404 for unknown events", async () => {
    const ev = await waitingRoomEvent();
    const t = await buyer("sec-bob");
    expect((await problem(await call(`/v1/events/${ev.id}/queue`, { token: t }), 400)).code).toBe("validation_failed");
    expect((await problem(await poll(ev.id, t, "no dots here"), 400)).code).toBe("validation_failed");
    expect((await problem(await poll(ev.id, t, `${"a".repeat(3_000)}.b`), 400)).code).toBe("validation_failed");
    expect((await problem(await call(`/v1/events/${ev.id}/queue`, { method: "POST" }), 401)).code).toBe("unauthorized");
    expect((await problem(await join(ev.id, organizer), 403)).code).toBe("forbidden");
    expect((await problem(await join("evt_00000000000000000000", t), 404)).code).toBe("not_found");
    expect((await problem(await join("not-an-id", t), 400)).code).toBe("validation_failed");
  });
});

import { createExecutionContext, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Inventory } from "../../durable-objects/inventory";
import { inventoryStub } from "../../lib/holds";
import { metrics } from "../../lib/metrics";
import { resetBreakers, resetSandbox } from "../../lib/payments";
import { b64url, signPayload } from "../../lib/signing";
import { checkIn as checkInStep, sendAnnouncements } from "../../lib/ticket-status";
import { parseTicketId, qrLinkSignature } from "../../lib/tickets";
import { app } from "../../workers/app";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";
import { eventually } from "../queues/helpers";
import type { QStashMockInfo } from "../setup/qstash-mock";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_QSTASH: QStashMockInfo;
    }
  }
}

interface TicketBody {
  id: string;
  orderId: string;
  eventId: string;
  seat: string;
  code: string;
  status: "valid" | "void" | "used";
}
interface OrderBody {
  id: string;
  tickets: { id: string; seat: string; code: string; status: string }[];
}
type CheckInProblem = Problem & { checkedInAt?: string; ticketId?: string };

let organizer: string;
let ev: EventBody;
let otherEvent: EventBody;
beforeAll(async () => {
  organizer = await tokenFor("org-tickets", "organizer");
  ev = await createEvent(organizer, { perCustomerLimit: 10 });
  otherEvent = await createEvent(organizer, { perCustomerLimit: 10 });
});
beforeEach(() => {
  resetSandbox();
  resetBreakers();
});

/** Buys `body` on `event` for `buyer` and answers the paid order. */
async function buy(buyer: string, body: unknown = { sectionId: "floor", quantity: 2 }, event: EventBody = ev): Promise<OrderBody> {
  const held = await call(`/v1/events/${event.id}/holds`, { method: "POST", token: buyer, json: body });
  expect(held.status).toBe(201);
  const holdId = ((await held.json()) as { hold: { id: string } }).hold.id;
  const paid = await call("/v1/orders", {
    method: "POST",
    token: buyer,
    json: { holdId, payment: { method: "sandbox", token: "tok_ok" } },
  });
  expect(paid.status).toBe(201);
  return ((await paid.json()) as { order: OrderBody }).order;
}

const checkIn = (code: string, eventId = ev.id, token = organizer) =>
  call(`/v1/events/${eventId}/check-ins`, { method: "POST", token, json: { code } });
const getTicket = (id: string, token: string) => call(`/v1/tickets/${encodeURIComponent(id)}`, { token });

/** Voids a ticket as a refund does: a `void` mark in the Inventory DO that recorded its order. */
async function voidTicket(ticketId: string): Promise<void> {
  const loc = parseTicketId(ticketId);
  if (!loc) throw new Error(`not a located ticket id: ${ticketId}`);
  await runInDurableObject(inventoryStub(env.INVENTORY, loc), (_: Inventory, state: DurableObjectState) => {
    state.storage.sql.exec(
      "INSERT INTO ticket_marks (ticket_id, order_id, status, at, by) VALUES (?, ?, 'void', ?, 'test-refund')",
      ticketId,
      loc.orderId,
      Date.now(),
    );
  });
}

describe("GET /v1/tickets/:id", () => {
  it("answers the owner the ticket (located id, valid), another buyer and unknown ids 404; used after check-in", async () => {
    const buyer = await tokenFor("tkt-owner", "buyer");
    const order = await buy(buyer, { sectionId: "a", seats: ["1-1", "1-2"] });
    expect(order.tickets.map((t) => t.status)).toEqual(["valid", "valid"]);
    const [first] = order.tickets;
    if (!first) throw new Error("no ticket");
    expect(first.id).toMatch(new RegExp(`^tkt_[0-9a-z]{20}_1\\.${ev.id}\\.a\\.0$`));
    expect(parseTicketId(first.id)?.orderId).toBe(order.id);

    const own = await getTicket(first.id, buyer);
    expect(own.status).toBe(200);
    expect(own.headers.get("Cache-Control")).toBe("private, no-store");
    const { ticket } = (await own.json()) as { ticket: TicketBody };
    expect(ticket).toEqual({ id: first.id, orderId: order.id, eventId: ev.id, seat: "1-1", code: first.code, status: "valid" });

    // Another buyer: 404, not 403 (no hint that the ticket exists).
    const intruder = await tokenFor("tkt-intruder", "buyer");
    const theirs = await getTicket(first.id, intruder);
    expect(theirs.status).toBe(404);
    expect(((await theirs.json()) as Problem).code).toBe("not_found");
    // Ids the server never issued, a ticket number past the order's, an unknown event or section: 404.
    const [, random] = /^tkt_([0-9a-z]{20})_/.exec(first.id) ?? [];
    for (const id of [
      "tkt_nope",
      first.id.replace("_1.", "_9."),
      `tkt_${random}_1.evt_0000000000000000.a.0`,
      first.id.replace(".a.0", ".zz.0"),
      first.id.replace(".a.0", ".a.7"),
      `tkt_${"0".repeat(20)}_1.${ev.id}.a.0`,
    ]) {
      const res = await getTicket(id, buyer);
      expect(res.status, id).toBe(404);
    }

    // Check-in makes it used, in the ticket, the order and the buyer's order list.
    expect((await checkIn(first.code)).status).toBe(200);
    expect(((await (await getTicket(first.id, buyer)).json()) as { ticket: TicketBody }).ticket.status).toBe("used");
    const read = (await (await call(`/v1/orders/${order.id}`, { token: buyer })).json()) as { order: OrderBody };
    expect(read.order.tickets.map((t) => t.status)).toEqual(["used", "valid"]);
    await eventually(async () => {
      const list = (await (await call("/v1/orders", { token: buyer })).json()) as { orders: OrderBody[] };
      return (
        list.orders
          .find((o) => o.id === order.id)
          ?.tickets.map((t) => t.status)
          .join() === "used,valid"
      );
    });
  });
});

describe("rate limits", () => {
  it("limits a buyer's ticket reads and order list like their order reads (route group reads)", async () => {
    const buyer = await tokenFor("tkt-limited", "buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 1 });
    const limited = { ...env, RATE_LIMITS: "" }; // the code's defaults (the suite runs with "off")
    for (const path of [
      `/v1/tickets/${order.tickets[0]?.id}`,
      `/v1/tickets/${order.tickets[0]?.id}/qr.svg`,
      `/v1/orders/${order.id}`,
      "/v1/orders",
    ]) {
      const ctx = createExecutionContext();
      const res = await app.fetch(
        new Request(`https://breakwater.test${path}`, { headers: { Authorization: `Bearer ${buyer}` } }),
        limited,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("RateLimit-Policy"), path).toMatch(/^"reads-user";q=120;w=60/);
    }
  });
});

describe("GET /v1/tickets/:id/qr.svg", () => {
  it("answers the owner an SVG QR code (another buyer 404)", async () => {
    const buyer = await tokenFor("tkt-qr", "buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 1 });
    const id = order.tickets[0]?.id ?? "";
    const res = await call(`/v1/tickets/${encodeURIComponent(id)}/qr.svg`, { token: buyer });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe("image/svg+xml; charset=utf-8");
    expect(res.headers.get("Content-Security-Policy")).toContain("default-src 'none'");
    const svg = await res.text();
    expect(svg).toMatch(/<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg).not.toMatch(/<script|on\w+=/i);
    // The symbol itself is decoded back to the code in test/e2e/ticket-qr.test.ts (Chromium + jsQR).
    const other = await call(`/v1/tickets/${encodeURIComponent(id)}/qr.svg`, { token: await tokenFor("tkt-qr-other", "buyer") });
    expect(other.status).toBe(404);
    expect((await call(`/v1/tickets/${encodeURIComponent(id)}/qr.svg`)).status).toBe(401);
  });

  it("opens without a token through a signed link (the mail's) for that ticket only", async () => {
    const buyer = await tokenFor("tkt-qr-link", "buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 2 });
    const [a, b] = order.tickets as [OrderBody["tickets"][0], OrderBody["tickets"][0]];
    const qr = (ticketId: string, sig: string) => call(`/v1/tickets/${encodeURIComponent(ticketId)}/qr.svg?sig=${encodeURIComponent(sig)}`);
    const sigA = await qrLinkSignature(env.SIGNING_SECRET, a.id);
    const ok = await qr(a.id, sigA);
    expect(ok.status).toBe(200);
    // The same symbol as the owner gets with the token.
    const owned = await call(`/v1/tickets/${encodeURIComponent(a.id)}/qr.svg`, { token: buyer });
    expect(await ok.text()).toBe(await owned.text());
    // A's signature does not open B; a tampered, foreign-secret or ticket-code signature opens nothing.
    expect((await qr(b.id, sigA)).status).toBe(404);
    expect((await qr(a.id, `${sigA.slice(0, -2)}AA`)).status).toBe(404);
    expect((await qr(a.id, await qrLinkSignature("another-secret-0123456789abcdef", a.id))).status).toBe(404);
    expect((await qr(a.id, a.code)).status).toBe(404);
    // It opens only the QR code: the ticket itself still needs the owner's token.
    expect((await call(`/v1/tickets/${encodeURIComponent(a.id)}?sig=${encodeURIComponent(sigA)}`)).status).toBe(401);
  });
});

describe("POST /v1/events/:id/check-ins", () => {
  it("20 concurrent check-ins of one ticket: exactly one 200, 19 × 409 already_checked_in with the same checkedInAt", async () => {
    const buyer = await tokenFor("tkt-gates", "buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 1 });
    const code = order.tickets[0]?.code ?? "";
    const counted = (result: string) => metrics.sum("breakwater_check_ins_total", { result });
    const before = { checkedIn: counted("checked_in"), already: counted("already_checked_in") };
    // The event's organizer scans the same code at 20 gates at once.
    const answers = await Promise.all(Array.from({ length: 20 }, () => checkIn(code)));
    expect(counted("checked_in") - before.checkedIn).toBe(1);
    expect(counted("already_checked_in") - before.already).toBe(19);
    const statuses = answers.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
    const winner = answers[statuses.indexOf(200)] as Response;
    const ok = (await winner.json()) as { ticket: TicketBody; checkedInAt: string };
    expect(ok.ticket).toMatchObject({ id: order.tickets[0]?.id, orderId: order.id, eventId: ev.id, status: "used" });
    const problems = (await Promise.all(answers.filter((r) => r.status === 409).map((r) => r.json()))) as CheckInProblem[];
    expect(new Set(problems.map((p) => p.code))).toEqual(new Set(["already_checked_in"]));
    expect(new Set(problems.map((p) => p.checkedInAt))).toEqual(new Set([ok.checkedInAt]));
    // A later scan still says when.
    const later = (await (await checkIn(code)).json()) as CheckInProblem;
    expect(later).toMatchObject({ status: 409, code: "already_checked_in", checkedInAt: ok.checkedInAt, ticketId: ok.ticket.id });
  });

  it("refuses a code of another event (404), a forged or malformed code, and a voided ticket (410 ticket_void)", async () => {
    const buyer = await tokenFor("tkt-bad", "buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 2 });
    const [t1, t2] = order.tickets as [OrderBody["tickets"][0], OrderBody["tickets"][0]];

    // The code of this event scanned at another event of the same organizer: 404, and it stays valid.
    const elsewhere = await checkIn(t1.code, otherEvent.id);
    expect(elsewhere.status).toBe(404);
    expect(((await elsewhere.json()) as Problem).code).toBe("not_found");

    // Forged: the claims of another seat under t1's signature; signed with another secret; not a ticket token.
    const [, mac] = t1.code.split(".");
    const claims = { t: t1.id, o: order.id, e: ev.id, s: "floor/GA-99" };
    const forged = `${b64url(new TextEncoder().encode(JSON.stringify(claims)))}.${mac}`;
    for (const code of [
      forged,
      await signPayload("another-secret-0123456789abcdef", "ticket", claims),
      await signPayload(env.SIGNING_SECRET, "queue-pass", claims),
      "not-a-code",
    ]) {
      const res = await checkIn(code);
      expect(res.status, code).toBe(404);
    }
    // Signed by us but naming an order that does not exist (a ticket never sold): 404.
    const ghostOrder = order.id.replace(/^ord_[0-9a-z]{20}/, `ord_${"0".repeat(20)}`);
    const ghost = await signPayload(env.SIGNING_SECRET, "ticket", {
      t: t1.id.replace(/^tkt_[0-9a-z]{20}/, `tkt_${"0".repeat(20)}`),
      o: ghostOrder,
      e: ev.id,
      s: "x",
    });
    expect((await checkIn(ghost)).status).toBe(404);
    // Malformed bodies: 400.
    for (const json of [{}, { code: "" }, { code: "x".repeat(3000) }, { code: t1.code, extra: 1 }]) {
      const res = await call(`/v1/events/${ev.id}/check-ins`, { method: "POST", token: organizer, json });
      expect(res.status, JSON.stringify(json).slice(0, 40)).toBe(400);
    }
    // Another organizer: 404 for the event (BOLA), and nothing is checked in.
    const stranger = await tokenFor("org-stranger", "organizer");
    expect((await checkIn(t1.code, ev.id, stranger)).status).toBe(404);
    // A buyer: 403.
    expect((await checkIn(t1.code, ev.id, buyer)).status).toBe(403);
    expect(((await (await getTicket(t1.id, buyer)).json()) as { ticket: TicketBody }).ticket.status).toBe("valid");

    // A refunded (void) ticket is refused and stays void; its neighbour still checks in.
    await voidTicket(t2.id);
    const refused = await checkIn(t2.code);
    expect(refused.status).toBe(410);
    const voidProblem = (await refused.json()) as CheckInProblem & { voidedAt?: string };
    expect(voidProblem).toMatchObject({ code: "ticket_void", ticketId: t2.id });
    expect(Date.parse(voidProblem.voidedAt ?? "")).toBeGreaterThan(Date.now() - 60_000);
    expect(((await (await getTicket(t2.id, buyer)).json()) as { ticket: TicketBody }).ticket.status).toBe("void");
    // An admin may check in at any event.
    const admin = await tokenFor("tkt-admin", "admin");
    expect((await checkIn(t1.code, ev.id, admin)).status).toBe(200);
  });

  it("a ticket refunded through the refund route is refused at the gate; a checked-in one cannot be refunded", async () => {
    const buyer = await tokenFor("tkt-refund", "buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 2 });
    const [refunded, used] = order.tickets as [OrderBody["tickets"][0], OrderBody["tickets"][0]];
    const refund = (ticketId: string) =>
      call(`/v1/orders/${order.id}/refund`, {
        method: "POST",
        token: organizer,
        json: { tickets: [ticketId] },
        headers: { "Idempotency-Key": `tkt-refund-${ticketId}` },
      });
    expect((await refund(refunded.id)).status).toBe(200);
    const refused = await checkIn(refunded.code);
    expect(refused.status).toBe(410);
    expect(((await refused.json()) as Problem).code).toBe("ticket_void");

    expect((await checkIn(used.code)).status).toBe(200);
    const late = await refund(used.id);
    expect(late.status).toBe(409);
    expect(((await late.json()) as Problem).code).toBe("not_refundable");
    const read = (await (await call(`/v1/orders/${order.id}`, { token: buyer })).json()) as { order: OrderBody & { status: string } };
    expect(read.order.tickets.map((t) => t.status)).toEqual(["void", "used"]);
    expect(read.order.status).toBe("partially_refunded");
  });

  it("a refund racing check-ins of the same ticket: exactly one of them wins, in the one DO that keeps the ticket", async () => {
    for (let round = 0; round < 3; round++) {
      const buyer = await tokenFor(`tkt-race-${round}`, "buyer");
      const order = await buy(buyer, { sectionId: "floor", quantity: 1 });
      const ticket = order.tickets[0] as OrderBody["tickets"][0];
      const [refundAnswer, ...scans] = await Promise.all([
        call(`/v1/orders/${order.id}/refund`, {
          method: "POST",
          token: organizer,
          json: { tickets: [ticket.id] },
          headers: { "Idempotency-Key": `tkt-race-${round}` },
        }),
        ...Array.from({ length: 5 }, () => checkIn(ticket.code)),
      ]);
      const scanStatuses = scans.map((r) => r.status).sort();
      const status = ((await (await getTicket(ticket.id, buyer)).json()) as { ticket: TicketBody }).ticket.status;
      if (refundAnswer?.status === 200) {
        // The refund came first: every scan refused as void.
        expect(scanStatuses, `round ${round}`).toEqual([410, 410, 410, 410, 410]);
        expect(status).toBe("void");
      } else {
        // A scan came first: one admitted, the refund refused, the ticket used.
        expect(refundAnswer?.status, `round ${round}`).toBe(409);
        expect(scanStatuses, `round ${round}`).toEqual([200, 409, 409, 409, 409]);
        expect(status).toBe("used");
      }
    }
  });

  it("announces the first check-in to the organizer's webhook (ticket.checked_in), once", async () => {
    const org = await tokenFor("org-tickets-hook", "organizer");
    const event = await createEvent(org);
    const url = `https://hooks.example/${crypto.randomUUID()}`;
    expect(
      (await call("/v1/organizers/me/webhook", { method: "PUT", token: org, json: { url, events: ["ticket.checked_in"] } })).status,
    ).toBe(200);
    const buyer = await tokenFor("tkt-hook-buyer", "buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 1 }, event);
    const ticket = order.tickets[0] as OrderBody["tickets"][0];
    const first = await checkIn(ticket.code, event.id, org);
    expect(first.status).toBe(200);
    const { checkedInAt } = (await first.json()) as { checkedInAt: string };
    expect((await checkIn(ticket.code, event.id, org)).status).toBe(409);
    type Published = { destination: string; body: string; headers: Record<string, string> };
    const deliveries = async () =>
      ((await (await fetch(`${env.TEST_QSTASH.url}/__published`)).json()) as Published[]).filter((p) => p.destination === url);
    await eventually(async () => (await deliveries()).length > 0);
    const [delivery, ...more] = await deliveries();
    expect(more).toEqual([]);
    expect(JSON.parse(delivery?.body ?? "{}")).toMatchObject({
      id: `ticket.checked_in:${ticket.id}`,
      type: "ticket.checked_in",
      eventId: event.id,
      createdAt: checkedInAt,
      data: { ticketId: ticket.id, orderId: order.id, seat: ticket.seat, checkedInAt },
    });
  });
});

describe("the ticket.checked_in outbox in the Inventory DO", () => {
  it("keeps the webhook when the queue refuses it, and its alarm sends it", async () => {
    const org = await tokenFor("org-tickets-outbox", "organizer");
    const event = await createEvent(org);
    const url = `https://hooks.example/${crypto.randomUUID()}`;
    expect(
      (await call("/v1/organizers/me/webhook", { method: "PUT", token: org, json: { url, events: ["ticket.checked_in"] } })).status,
    ).toBe(200);
    const buyer = await tokenFor("tkt-outbox-buyer", "buyer");
    const order = await buy(buyer, { sectionId: "floor", quantity: 1 }, event);
    const ticket = order.tickets[0] as OrderBody["tickets"][0];
    const loc = parseTicketId(ticket.id);
    if (!loc) throw new Error("not located");
    const stub = inventoryStub(env.INVENTORY, loc);
    const refusing = {
      sendBatch: async () => {
        throw new Error("queue unavailable");
      },
    } as unknown as Queue;
    const retriesBefore = metrics.sum("breakwater_check_in_webhook_retries_total", {});

    // The check-in step as the DO runs it, then a send the queue refuses: the announcement stays, due later.
    const kept = await runInDurableObject(stub, async (_: Inventory, state: DurableObjectState) => {
      const sql = state.storage.sql;
      expect(checkInStep(sql, loc.orderId, ticket.id, "gate-7", Date.now()).result).toBe("checked_in");
      await sendAnnouncements(sql, refusing, Date.now(), [ticket.id]);
      const rows = sql
        .exec<{ attempts: number; due_at: number }>("SELECT attempts, due_at FROM check_in_announcements WHERE ticket_id = ?", ticket.id)
        .toArray();
      // Due now, so the alarm below finds it.
      sql.exec("UPDATE check_in_announcements SET due_at = ? WHERE ticket_id = ?", Date.now(), ticket.id);
      return rows;
    });
    expect(kept).toHaveLength(1);
    expect(kept[0]?.attempts).toBe(1);
    expect(kept[0]?.due_at).toBeGreaterThan(Date.now());
    expect(metrics.sum("breakwater_check_in_webhook_retries_total", {}) - retriesBefore).toBe(1);
    expect(((await (await getTicket(ticket.id, buyer)).json()) as { ticket: TicketBody }).ticket.status).toBe("used");

    // The alarm hands it to the real queue; the organizer receives it, and the outbox is empty.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    type Published = { destination: string; body: string };
    const deliveries = async () =>
      ((await (await fetch(`${env.TEST_QSTASH.url}/__published`)).json()) as Published[]).filter((p) => p.destination === url);
    await eventually(async () => (await deliveries()).length > 0);
    expect(JSON.parse((await deliveries())[0]?.body ?? "{}")).toMatchObject({
      id: `ticket.checked_in:${ticket.id}`,
      type: "ticket.checked_in",
      data: { ticketId: ticket.id, orderId: order.id, by: "gate-7" },
    });
    const left = await runInDurableObject(stub, (_: Inventory, state: DurableObjectState) =>
      state.storage.sql.exec("SELECT ticket_id FROM check_in_announcements").toArray(),
    );
    expect(left).toEqual([]);
  });
});

/** Parses RFC 4180 CSV (quoted fields with doubled quotes, CRLF records) independently of the code under test. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      row.push(field);
      field = "";
    } else if (ch === "\r" && text[i + 1] === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      i++;
    } else field += ch;
  }
  if (field || row.length) throw new Error("CSV does not end with CRLF");
  return rows;
}

describe("GET /v1/events/:id/check-ins.csv", () => {
  it("lists every ticket of the event with its status and times; only for its organizer or an admin", async () => {
    const org = await tokenFor("org-tickets-csv", "organizer");
    const event = await createEvent(org, { perCustomerLimit: 10 });
    const buyer = await tokenFor("tkt-csv-buyer", "buyer");
    const ga = await buy(buyer, { sectionId: "floor", quantity: 3 }, event);
    const seated = await buy(buyer, { sectionId: "a", seats: ["2-1", "2-2"] }, event);
    const [used, voided] = ga.tickets as [OrderBody["tickets"][0], OrderBody["tickets"][0]];
    const { checkedInAt } = (await (await checkIn(used.code, event.id, org)).json()) as { checkedInAt: string };
    await voidTicket(voided.id);

    const res = await call(`/v1/events/${event.id}/check-ins.csv`, { token: org });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe("text/csv; charset=utf-8");
    expect(res.headers.get("Content-Disposition")).toBe(`attachment; filename="check-ins-${event.id}.csv"`);
    const [header, ...rows] = parseCsv(await res.text());
    expect(header).toEqual(["ticket_id", "order_id", "section", "seat", "status", "checked_in_at", "voided_at", "code"]);
    const byId = new Map(rows.map((r) => [r[0], r]));
    expect(byId.size).toBe(5);
    expect(rows).toHaveLength(5);
    for (const t of [...ga.tickets, ...seated.tickets]) {
      const row = byId.get(t.id) as string[];
      expect(row[1]).toBe(t === ga.tickets.find((x) => x.id === t.id) ? ga.id : seated.id);
      expect(row[2]).toBe(ga.tickets.includes(t) ? "floor" : "a");
      expect(row[3]).toBe(t.seat);
      expect(row[7]).toBe(t.code);
    }
    expect(byId.get(used.id)?.slice(4, 7)).toEqual(["used", checkedInAt, ""]);
    expect(byId.get(voided.id)?.[4]).toBe("void");
    expect(Number.isNaN(Date.parse(byId.get(voided.id)?.[6] ?? ""))).toBe(false);
    for (const t of [ga.tickets[2], ...seated.tickets]) expect(byId.get(t?.id)?.slice(4, 7)).toEqual(["valid", "", ""]);

    // Another organizer: 404; a buyer: 403; an admin: the same list.
    expect((await call(`/v1/events/${event.id}/check-ins.csv`, { token: organizer })).status).toBe(404);
    expect((await call(`/v1/events/${event.id}/check-ins.csv`, { token: buyer })).status).toBe(403);
    const admin = await call(`/v1/events/${event.id}/check-ins.csv`, { token: await tokenFor("csv-admin", "admin") });
    expect(parseCsv(await admin.text())).toHaveLength(6);
  });
});

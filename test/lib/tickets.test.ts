import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { csvField, csvLine } from "../../lib/check-in";
import { b64url, fromB64url, signPayload } from "../../lib/signing";
import { issueTickets, parseTicketId, ticketIdFor, verifyTicketCode } from "../../lib/tickets";

const secret = env.SIGNING_SECRET;
const orderId = "ord_0123456789abcdefghjk.evt_tckets000000000.floor.1";

describe("issueTickets", () => {
  it("issues one ticket per general-admission place, numbered, with a verifiable code", async () => {
    const tickets = await issueTickets(secret, { orderId, eventId: "evt_tckets000000000", sectionId: "floor", seats: [], quantity: 3 });
    expect(tickets.map((t) => [t.id, t.seat])).toEqual([
      ["tkt_0123456789abcdefghjk_1.evt_tckets000000000.floor.1", "floor/GA-1"],
      ["tkt_0123456789abcdefghjk_2.evt_tckets000000000.floor.1", "floor/GA-2"],
      ["tkt_0123456789abcdefghjk_3.evt_tckets000000000.floor.1", "floor/GA-3"],
    ]);
    expect(tickets.map((t) => t.status)).toEqual(["valid", "valid", "valid"]);
    for (const t of tickets)
      expect(await verifyTicketCode(secret, t.code)).toEqual({ t: t.id, o: orderId, e: "evt_tckets000000000", s: t.seat });
  });

  it("issues one ticket per held seat, and the same tickets again for the same order", async () => {
    const order = { orderId, eventId: "evt_tckets000000000", sectionId: "a", seats: ["a/1-4", "a/1-5"], quantity: 2 };
    const tickets = await issueTickets(secret, order);
    expect(tickets.map((t) => t.seat)).toEqual(["a/1-4", "a/1-5"]);
    expect(new Set(tickets.map((t) => t.code)).size).toBe(2);
    expect(await issueTickets(secret, order)).toEqual(tickets);
  });
});

describe("ticket ids", () => {
  it("locate their order's Inventory DO, and only ids the server issues parse", () => {
    expect(parseTicketId(ticketIdFor(orderId, 0))).toEqual({ orderId, eventId: "evt_tckets000000000", sectionId: "floor", shard: 1 });
    expect(parseTicketId(ticketIdFor(orderId, 49))?.orderId).toBe(orderId);
    for (const bad of [
      "tkt_0123456789abcdefghjk_1", // issued before ids were located: no location
      "tkt_0123456789abcdefghjk_0.evt_tckets000000000.floor.1", // tickets count from 1
      "tkt_0123456789abcdefghjk_01.evt_tckets000000000.floor.1",
      "tkt_0123456789abcdefghjk_1.evt_tckets000000000.floor.100", // shard out of range
      "tkt_0123456789abcdefghjk_1.evt_x.floor.1", // not an event id
      "tkt_0123456789abcdefghjk_1.evt_tckets000000000.fl/or.1",
      "tkt_0123456789abcdefghjkl_1.evt_tckets000000000.floor.1", // 21 random characters
      "tkt_0123456789ABCDEFGHJK_1.evt_tckets000000000.floor.1",
      "ord_0123456789abcdefghjk.evt_tckets000000000.floor.1",
      `tkt_0123456789abcdefghjk_1.evt_tckets000000000.floor.1${"0".repeat(200)}`,
      "",
    ])
      expect(parseTicketId(bad), bad).toBeNull();
  });
});

describe("check-in list CSV", () => {
  it("quotes fields with commas, quotes or line breaks (RFC 4180) and keeps every value exact", () => {
    expect(csvField("plain")).toBe("plain");
    expect(csvField("a,b")).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField("two\r\nlines")).toBe('"two\r\nlines"');
    expect(csvField("=1+1")).toBe("=1+1");
    const line = csvLine("floor", {
      ticketId: "t1",
      orderId: "o1",
      seat: 'row "7", seat 3',
      status: "used",
      at: "2026-12-04T21:00:00.000Z",
      code: "c.d",
    });
    expect(line).toBe('t1,o1,floor,"row ""7"", seat 3",used,2026-12-04T21:00:00.000Z,,c.d\r\n');
    expect(csvLine("a", { ticketId: "t2", orderId: "o2", seat: "1-1", status: "void", at: "2026-12-04T22:00:00.000Z", code: "x" })).toBe(
      "t2,o2,a,1-1,void,,2026-12-04T22:00:00.000Z,x\r\n",
    );
  });
});

describe("ticket codes", () => {
  it("are compact (order, number, seat) and verify to the ticket they were issued for", async () => {
    const [ticket] = await issueTickets(secret, { orderId, eventId: "evt_tckets000000000", sectionId: "floor", seats: [], quantity: 1 });
    const code = ticket?.code ?? "";
    const [body] = code.split(".");
    expect(JSON.parse(new TextDecoder().decode(fromB64url(body ?? "")))).toEqual({ o: orderId, n: 1, s: "floor/GA-1" });
    expect(await verifyTicketCode(secret, code)).toEqual({ t: ticket?.id, o: orderId, e: "evt_tckets000000000", s: "floor/GA-1" });
  });

  it("issued in the earlier form (ticket and event spelled out) still verify", async () => {
    const claims = { t: "tkt_0123456789abcdefghjk_1", o: orderId, e: "evt_tckets000000000", s: "floor/GA-1" };
    expect(await verifyTicketCode(secret, await signPayload(secret, "ticket", claims))).toEqual(claims);
  });
});

describe("verifyTicketCode", () => {
  it("refuses a tampered, foreign, wrong-purpose or malformed code", async () => {
    const [ticket] = await issueTickets(secret, { orderId, eventId: "evt_tckets000000000", sectionId: "a", seats: ["a/1-1"], quantity: 1 });
    const code = ticket?.code as string;
    const [, mac] = code.split(".");
    for (const claims of [
      { o: orderId, n: 1, s: "a/1-2" }, // another seat, same signature
      { o: orderId, n: 2, s: "a/1-1" }, // another ticket of the order
      { t: ticket?.id, o: orderId, e: "evt_tckets000000000", s: "a/1-2" },
    ]) {
      const forgedBody = b64url(new TextEncoder().encode(JSON.stringify(claims)));
      expect(await verifyTicketCode(secret, `${forgedBody}.${mac}`), JSON.stringify(claims)).toBeNull();
    }
    // Signed by us but naming an order id the server never issues, or a ticket number out of range.
    expect(await verifyTicketCode(secret, await signPayload(secret, "ticket", { o: "ord_x", n: 1, s: "a/1-1" }))).toBeNull();
    expect(await verifyTicketCode(secret, await signPayload(secret, "ticket", { o: orderId, n: 0, s: "a/1-1" }))).toBeNull();
    expect(await verifyTicketCode("another-secret-0123456789abcdef", code)).toBeNull();
    expect(await verifyTicketCode(secret, await signPayload(secret, "pass", { t: "x", o: "y", e: "z", s: "w" }))).toBeNull();
    expect(await verifyTicketCode(secret, await signPayload(secret, "ticket", { t: "x" }))).toBeNull(); // signed, not a ticket
    for (const junk of ["", ".", "abc", `${code}.x`, "x".repeat(5000)]) expect(await verifyTicketCode(secret, junk)).toBeNull();
  });
});

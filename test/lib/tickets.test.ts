import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { b64url, signToken } from "../../lib/signing";
import { issueTickets, verifyTicketCode } from "../../lib/tickets";

const secret = env.SIGNING_SECRET;
const orderId = "ord_0123456789abcdefghjk.evt_tickets00000000.floor.1";

describe("issueTickets", () => {
  it("issues one ticket per general-admission place, numbered, with a verifiable code", async () => {
    const tickets = await issueTickets(secret, { orderId, eventId: "evt_tickets00000000", sectionId: "floor", seats: [], quantity: 3 });
    expect(tickets.map((t) => [t.id, t.seat])).toEqual([
      ["tkt_0123456789abcdefghjk_1", "floor/GA-1"],
      ["tkt_0123456789abcdefghjk_2", "floor/GA-2"],
      ["tkt_0123456789abcdefghjk_3", "floor/GA-3"],
    ]);
    for (const t of tickets)
      expect(await verifyTicketCode(secret, t.code)).toEqual({ t: t.id, o: orderId, e: "evt_tickets00000000", s: t.seat });
  });

  it("issues one ticket per held seat, and the same tickets again for the same order", async () => {
    const order = { orderId, eventId: "evt_tickets00000000", sectionId: "a", seats: ["a/1-4", "a/1-5"], quantity: 2 };
    const tickets = await issueTickets(secret, order);
    expect(tickets.map((t) => t.seat)).toEqual(["a/1-4", "a/1-5"]);
    expect(new Set(tickets.map((t) => t.code)).size).toBe(2);
    expect(await issueTickets(secret, order)).toEqual(tickets);
  });
});

describe("verifyTicketCode", () => {
  it("refuses a tampered, foreign, wrong-purpose or malformed code", async () => {
    const [ticket] = await issueTickets(secret, { orderId, eventId: "evt_tickets00000000", sectionId: "a", seats: ["a/1-1"], quantity: 1 });
    const code = ticket?.code as string;
    const [, mac] = code.split(".");
    const forgedBody = b64url(
      new TextEncoder().encode(JSON.stringify({ t: ticket?.id, o: orderId, e: "evt_tickets00000000", s: "a/1-2" })),
    );
    expect(await verifyTicketCode(secret, `${forgedBody}.${mac}`)).toBeNull(); // another seat, same signature
    expect(await verifyTicketCode("another-secret-0123456789abcdef", code)).toBeNull();
    expect(await verifyTicketCode(secret, await signToken(secret, "pass", { t: "x", o: "y", e: "z", s: "w" }))).toBeNull();
    expect(await verifyTicketCode(secret, await signToken(secret, "ticket", { t: "x" }))).toBeNull(); // signed, not a ticket
    for (const junk of ["", ".", "abc", `${code}.x`, "x".repeat(5000)]) expect(await verifyTicketCode(secret, junk)).toBeNull();
  });
});

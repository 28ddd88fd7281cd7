import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { call, createEvent, eventInput, type Problem, tokenFor } from "../helpers";

let organizer: string;
beforeAll(async () => {
  organizer = await tokenFor("org-text", "organizer");
});

const countEvents = async () => (await env.CATALOG_DB.prepare("SELECT count(*) AS n FROM events").first<{ n: number }>())?.n ?? -1;

/** Names that must be refused, with why. JSON.stringify escapes a lone surrogate as \ud800, so it reaches the parser. */
const badNames: [string, string][] = [
  ["NUL", "Night\u0000Drive"],
  ["newline", "Night\nDrive"],
  ["escape (C0)", "Night\u001b[31mDrive"],
  ["C1 control", "Night\u0085Drive"],
  ["right-to-left override U+202E", "Night \u202Eevird"],
  ["left-to-right embedding U+202A", "\u202ANight Drive"],
  ["first-strong isolate U+2068", "Night \u2068Drive\u2069"],
  ["lone high surrogate", "Night \ud800 Drive"],
  ["lone low surrogate", "Night \udc00 Drive"],
  ["reversed surrogate pair", "Night \udc00\ud800 Drive"],
  ["HTML tag", "<script>alert(1)</script>"],
  ["HTML comment", "Night <!-- x --> Drive"],
  ["closing tag", "Night</b>Drive"],
];

describe("display text of events", () => {
  for (const [why, name] of badNames) {
    it(`refuses an event name with ${why}: 400 validation_failed, nothing stored`, async () => {
      const before = await countEvents();
      const res = await call("/v1/events", { method: "POST", token: organizer, json: eventInput({ name }) });
      expect(res.status).toBe(400);
      expect(res.headers.get("Content-Type")).toBe("application/problem+json");
      const problem = (await res.json()) as Problem;
      expect(problem.code).toBe("validation_failed");
      expect(problem.errors?.map((e) => e.path)).toContain("name");
      expect(await countEvents()).toBe(before);
    });
  }

  it("refuses the same characters in the venue and section names", async () => {
    const before = await countEvents();
    const venue = await call("/v1/events", { method: "POST", token: organizer, json: eventInput({ venue: "Hall\u202E7" }) });
    expect(venue.status).toBe(400);
    expect(((await venue.json()) as Problem).errors?.map((e) => e.path)).toContain("venue");
    const section = await call("/v1/events", {
      method: "POST",
      token: organizer,
      json: eventInput({ sections: [{ id: "floor", name: "Floor\u0000", kind: "ga", price: 1, capacity: 10 }] }),
    });
    expect(section.status).toBe(400);
    expect(((await section.json()) as Problem).errors?.map((e) => e.path)).toContain("sections.0.name");
    expect(await countEvents()).toBe(before);
  });

  it("refuses them when an event is renamed, leaving it unchanged", async () => {
    const ev = await createEvent(organizer);
    const res = await call(`/v1/events/${ev.id}`, { method: "PATCH", token: organizer, json: { name: "Renamed \ud83d" } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Problem).code).toBe("validation_failed");
    const row = await env.CATALOG_DB.prepare("SELECT name, version FROM events WHERE id = ?")
      .bind(ev.id)
      .first<{ name: string; version: number }>();
    expect(row).toEqual({ name: ev.name, version: ev.version });
  });

  it("keeps names in other scripts, emoji (surrogate pairs), right-to-left text and a '<' that opens no tag", async () => {
    for (const name of ["Nachtfahrt – Ölhafen", "夜のドライブ 🎸", "ليلة القيادة", "מסע לילה", "Rock <3 & Roll", "a < b > c"]) {
      const res = await call("/v1/events", { method: "POST", token: organizer, json: eventInput({ name }) });
      expect(res.status, name).toBe(201);
      expect(((await res.json()) as { event: { name: string } }).event.name).toBe(name);
    }
  });
});

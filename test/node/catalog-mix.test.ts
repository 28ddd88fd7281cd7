import { describe, expect, it } from "vitest";
import { catalogUrls, isListRead } from "../../bench/lib/catalog-mix.ts";

const ids = Array.from({ length: 50 }, (_, i) => `evt_${String(i).padStart(20, "0")}`);
const listReads = (url: (i: number) => string, from: number, n: number) =>
  Array.from({ length: n }, (_, k) => url(from + k)).filter((u) => u.endsWith("/v1/events")).length;

describe("bench catalog mix", () => {
  it("reads the list at its share in every run, however many runs came before", () => {
    const url = catalogUrls("http://127.0.0.1:1", ids, { zipfS: 1.05, listShare: 0.05 });
    // A warm-up, then steps of a search: each runLoad numbers its requests from 0, most with fewer than the first.
    for (const n of [4_000, 31_000, 27_559, 20_000, 1_000]) expect(listReads(url, 0, n)).toBe(Math.floor(n * 0.05));
  });

  it("spreads the list reads evenly and keeps every other read an event", () => {
    const url = catalogUrls("http://127.0.0.1:1", ids, { zipfS: 1.05, listShare: 0.1 });
    for (let from = 0; from < 1_000; from += 10) expect(listReads(url, from, 10)).toBe(1);
    const events = Array.from({ length: 1_000 }, (_, i) => url(i)).filter((u) => !u.endsWith("/v1/events"));
    expect(events).toHaveLength(900);
    expect(events.every((u) => ids.some((id) => u.endsWith(`/v1/events/${id}`)))).toBe(true);
  });

  it("reads no list at share 0 and only the list at share 1", () => {
    expect(Array.from({ length: 100 }, (_, i) => isListRead(i, 0)).some(Boolean)).toBe(false);
    expect(Array.from({ length: 100 }, (_, i) => isListRead(i, 1)).every(Boolean)).toBe(true);
  });
});

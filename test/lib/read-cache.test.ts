import { describe, expect, it } from "vitest";
import { metrics } from "../../lib/metrics";
import { parsedBody, ReadThroughCache, type ReadThroughSource } from "../../lib/read-cache";

/** A manual clock: `advance` moves time on, so lifetimes lapse exactly when a test says (no sleeps). */
function manualClock() {
  let t = 1_000_000;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

/** A source whose KV answers `body()` (a new string each time, as KV and the Cache API hand back) and counts its calls. */
function kvSource(key: string, state: { kvCalls: number }, body: () => string): ReadThroughSource {
  return {
    key,
    cacheUrl: "",
    edgeTtlSeconds: 1,
    waitUntil: () => {},
    kv: async () => {
      state.kvCalls++;
      return `${body()} `.trimEnd();
    },
    origin: async () => null,
  };
}

/** A source whose KV answers `{"v":<version>}` and counts its calls. */
function source(key: string, state: { version: number; kvCalls: number; current: () => Promise<boolean> }): ReadThroughSource {
  return {
    ...kvSource(key, state, () => JSON.stringify({ v: state.version })),
    versionOf: (body) => (JSON.parse(body) as { v: number }).v,
    isCurrent: (version) => state.current().then((ok) => ok && version === state.version),
  };
}

describe("ReadThroughCache with a version check", () => {
  it("renews an entry past its lifetime while its version is current, without another fill", async () => {
    const clock = manualClock();
    const cache = new ReadThroughCache({ ttlMs: 20, negativeTtlMs: 20, maxEntries: 10, now: clock.now });
    const state = { version: 1, kvCalls: 0, current: async () => true };
    const src = source("k1", state);
    expect((await cache.get(src)).layer).toBe("kv");
    expect((await cache.get(src)).layer).toBe("micro");
    clock.advance(30);
    const validatedBefore = metrics.value("breakwater_cache_lookups_total", { layer: "validated" });
    const renewed = await cache.get(src);
    expect(renewed.layer).toBe("validated");
    expect(renewed.value?.version).toBe(1);
    expect(metrics.value("breakwater_cache_lookups_total", { layer: "validated" })).toBe(validatedBefore + 1);
    // Renewed for a whole lifetime: the next read is a plain hit.
    expect((await cache.get(src)).layer).toBe("micro");
    expect(state.kvCalls).toBe(1);
  });

  it("fills again once the version has moved on", async () => {
    const clock = manualClock();
    const cache = new ReadThroughCache({ ttlMs: 20, negativeTtlMs: 20, maxEntries: 10, now: clock.now });
    const state = { version: 1, kvCalls: 0, current: async () => true };
    const src = source("k2", state);
    await cache.get(src);
    state.version = 2;
    // Within its lifetime the old body is still served (the documented staleness).
    expect((await cache.get(src)).value?.body).toBe('{"v":1}');
    clock.advance(30);
    const next = await cache.get(src);
    expect(next.layer).toBe("kv");
    expect(next.value).toMatchObject({ body: '{"v":2}', version: 2 });
    expect(state.kvCalls).toBe(2);
  });

  it("treats a failing version check as 'not current' and fills", async () => {
    const clock = manualClock();
    const cache = new ReadThroughCache({ ttlMs: 20, negativeTtlMs: 20, maxEntries: 10, now: clock.now });
    const state = {
      version: 1,
      kvCalls: 0,
      current: async (): Promise<boolean> => {
        throw new Error("manifest unavailable");
      },
    };
    const src = source("k3", state);
    await cache.get(src);
    clock.advance(30);
    expect((await cache.get(src)).layer).toBe("kv");
    expect(state.kvCalls).toBe(2);
  });

  it("does not count reads marked uncounted", async () => {
    const clock = manualClock();
    const cache = new ReadThroughCache({ ttlMs: 1_000, negativeTtlMs: 1_000, maxEntries: 10, now: clock.now });
    const state = { version: 1, kvCalls: 0, current: async () => true };
    const before = metrics.sum("breakwater_cache_lookups_total");
    await cache.get({ ...source("k4", state), counted: false });
    await cache.get({ ...source("k4", state), counted: false });
    expect(metrics.sum("breakwater_cache_lookups_total")).toBe(before);
  });
});

describe("ReadThroughCache refills", () => {
  /** A source with no version (like the list and the manifest): KV answers `state.body`. */
  const unversioned = (key: string, state: { body: string; kvCalls: number }) => kvSource(key, state, () => state.body);

  it("keep the held value, parse included, when the body came back unchanged", async () => {
    const clock = manualClock();
    const cache = new ReadThroughCache({ ttlMs: 20, negativeTtlMs: 20, maxEntries: 10, now: clock.now });
    const state = { body: '{"v":{"evt_a":1}}', kvCalls: 0 };
    const src = unversioned("r1", state);
    let parses = 0;
    const parse = (body: string) => {
      parses++;
      return JSON.parse(body) as unknown;
    };
    const first = await cache.get(src);
    const parsed = parsedBody(first.value as NonNullable<typeof first.value>, parse);
    clock.advance(30);
    const again = await cache.get(src);
    expect(again.layer).toBe("kv");
    expect(state.kvCalls).toBe(2);
    expect(again.value).toBe(first.value);
    expect(parsedBody(again.value as NonNullable<typeof again.value>, parse)).toBe(parsed);
    expect(parses).toBe(1);
    // Renewed for a whole lifetime.
    expect((await cache.get(src)).layer).toBe("micro");
  });

  it("serve a changed body at once, with its own parse", async () => {
    const clock = manualClock();
    const cache = new ReadThroughCache({ ttlMs: 20, negativeTtlMs: 20, maxEntries: 10, now: clock.now });
    const state = { body: '{"v":{"evt_a":1}}', kvCalls: 0 };
    const src = unversioned("r2", state);
    const first = await cache.get(src);
    parsedBody(first.value as NonNullable<typeof first.value>, JSON.parse);
    state.body = '{"v":{"evt_a":2}}';
    clock.advance(30);
    const next = await cache.get(src);
    expect(next.value).not.toBe(first.value);
    expect(next.value?.body).toBe('{"v":{"evt_a":2}}');
    expect(next.value?.etag).not.toBe(first.value?.etag);
    expect(next.value?.parsed).toBeUndefined();
    expect((await cache.get(src)).value?.body).toBe('{"v":{"evt_a":2}}');
  });

  it("give the requests that waited on an unchanged refill the held value", async () => {
    const clock = manualClock();
    const cache = new ReadThroughCache({ ttlMs: 20, negativeTtlMs: 20, maxEntries: 10, now: clock.now });
    const state = { body: '{"events":[]}', kvCalls: 0 };
    const src = unversioned("r3", state);
    const first = await cache.get(src);
    clock.advance(30);
    const reads = await Promise.all(Array.from({ length: 5 }, () => cache.get(src)));
    expect(state.kvCalls).toBe(2);
    expect(reads.map((r) => r.layer).sort()).toEqual(["coalesced", "coalesced", "coalesced", "coalesced", "kv"]);
    for (const r of reads) expect(r.value).toBe(first.value);
  });

  it("replace a changed key in place: a full cache drops no other key for it", async () => {
    const clock = manualClock();
    const cache = new ReadThroughCache({ ttlMs: 20, negativeTtlMs: 20, maxEntries: 2, now: clock.now });
    const other = { version: 1, kvCalls: 0, current: async () => true };
    const state = { body: '{"x":1}', kvCalls: 0 };
    await cache.get(source("r4-other", other));
    await cache.get(unversioned("r4", state));
    clock.advance(30);
    state.body = '{"x":2}';
    expect((await cache.get(unversioned("r4", state))).value?.body).toBe('{"x":2}');
    // Still held (past its lifetime, its version confirmed), so not read from KV again.
    expect((await cache.get(source("r4-other", other))).layer).toBe("validated");
    expect(other.kvCalls).toBe(1);
    // A new key still makes room by dropping the oldest held: "r4-other".
    await cache.get(unversioned("r4-new", { body: "{}", kvCalls: 0 }));
    expect((await cache.get(source("r4-other", other))).layer).toBe("kv");
    expect(other.kvCalls).toBe(2);
  });
});

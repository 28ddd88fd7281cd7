import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type CustomerLedger, IDEMPOTENCY_IN_FLIGHT_TTL_MS, IDEMPOTENCY_TTL_MS } from "../../durable-objects/customer-ledger";
import { ledgerStub } from "../../lib/holds";

let n = 0;
const unique = (p: string) => `${p}-${n++}-${crypto.randomUUID().slice(0, 8)}`;
/** A fresh buyer's ledger (storage persists across the tests of this file). */
const fresh = () => ledgerStub(env.CUSTOMER_LEDGER, unique("ledger-buyer"));
type Ledger = ReturnType<typeof fresh>;

const sql = (ledger: Ledger, query: string, ...params: (string | number)[]) =>
  runInDurableObject(ledger, (_: CustomerLedger, state) => {
    state.storage.sql.exec(query, ...params);
  });

describe("CustomerLedger: idempotency records", () => {
  it("begins a key as new, then reports it in flight to a second caller with the same request", async () => {
    const ledger = fresh();
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual({ kind: "new" });
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual({ kind: "in_flight" });
  });

  it("replays a completed key with its status, body, content type and stored headers", async () => {
    const ledger = fresh();
    await ledger.beginIdempotent("k1", "fp-a");
    await ledger.completeIdempotent("k1", 201, '{"hold":{"id":"h1"}}', "application/json; charset=UTF-8", [["Location", "/v1/holds/h1"]]);
    const replay = {
      kind: "replay",
      status: 201,
      body: '{"hold":{"id":"h1"}}',
      contentType: "application/json; charset=UTF-8",
      headers: [["Location", "/v1/holds/h1"]],
    };
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual(replay);
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual(replay);
    await ledger.beginIdempotent("k2", "fp-a");
    await ledger.completeIdempotent("k2", 204, "", "application/json");
    expect(await ledger.beginIdempotent("k2", "fp-a")).toMatchObject({ kind: "replay", status: 204, headers: [] });
  });

  it("reports a mismatch for another request under the key, in flight or completed, and keeps the first", async () => {
    const ledger = fresh();
    await ledger.beginIdempotent("k1", "fp-a");
    expect(await ledger.beginIdempotent("k1", "fp-b")).toEqual({ kind: "mismatch" });
    await ledger.completeIdempotent("k1", 200, "{}", "application/json");
    expect(await ledger.beginIdempotent("k1", "fp-b")).toEqual({ kind: "mismatch" });
    expect(await ledger.beginIdempotent("k1", "fp-a")).toMatchObject({ kind: "replay", status: 200 });
  });

  it("lets the same request retry an abandoned (failed) key at once, keeps its fingerprint, and never abandons a completed one", async () => {
    const ledger = fresh();
    await ledger.beginIdempotent("k1", "fp-a");
    await ledger.abandonIdempotent("k1", 503);
    expect(await ledger.beginIdempotent("k1", "fp-b")).toEqual({ kind: "mismatch" });
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual({ kind: "new" });
    // Running again: in flight once more, until it completes.
    expect(await ledger.beginIdempotent("k1", "fp-a")).toEqual({ kind: "in_flight" });
    await ledger.completeIdempotent("k1", 201, "{}", "application/json");
    await ledger.abandonIdempotent("k1", 500);
    expect(await ledger.beginIdempotent("k1", "fp-a")).toMatchObject({ kind: "replay", status: 201 });
  });

  it("presumes an in-flight key older than its TTL dead, and lets a completed one go after a day", async () => {
    const ledger = fresh();
    await ledger.beginIdempotent("stuck", "fp-a");
    await sql(ledger, "UPDATE idempotency SET created_at = ? WHERE key = 'stuck'", Date.now() - IDEMPOTENCY_IN_FLIGHT_TTL_MS - 1);
    expect(await ledger.beginIdempotent("stuck", "fp-a")).toEqual({ kind: "new" });

    await ledger.beginIdempotent("old", "fp-a");
    await ledger.completeIdempotent("old", 201, "{}", "application/json");
    await sql(ledger, "UPDATE idempotency SET created_at = ? WHERE key = 'old'", Date.now() - IDEMPOTENCY_IN_FLIGHT_TTL_MS - 1);
    expect(await ledger.beginIdempotent("old", "fp-a")).toMatchObject({ kind: "replay" });
    await sql(ledger, "UPDATE idempotency SET created_at = ? WHERE key = 'old'", Date.now() - IDEMPOTENCY_TTL_MS - 1);
    // Past a day the key is free again, for any request.
    expect(await ledger.beginIdempotent("old", "fp-other")).toEqual({ kind: "new" });
  });

  it("deletes records older than a day in its alarm and keeps younger ones", async () => {
    const ledger = fresh();
    for (const key of ["young", "aged"]) {
      await ledger.beginIdempotent(key, "fp");
      await ledger.completeIdempotent(key, 201, "{}", "application/json");
    }
    await sql(ledger, "UPDATE idempotency SET created_at = ? WHERE key = 'aged'", Date.now() - IDEMPOTENCY_TTL_MS - 1);
    expect(await runDurableObjectAlarm(ledger)).toBe(true);
    const keys = await runInDurableObject(ledger, (_: CustomerLedger, state) =>
      state.storage.sql
        .exec<{ key: string }>("SELECT key FROM idempotency")
        .toArray()
        .map((r) => r.key),
    );
    expect(keys).toEqual(["young"]);
  });
});

describe("CustomerLedger: concurrency", () => {
  it("lets exactly one of many concurrent first uses of a key begin", async () => {
    const ledger = fresh();
    const begins = await Promise.all(Array.from({ length: 30 }, () => ledger.beginIdempotent("race", "fp")));
    expect(begins.filter((b) => b.kind === "new")).toHaveLength(1);
    expect(begins.filter((b) => b.kind === "in_flight")).toHaveLength(29);
  });
});

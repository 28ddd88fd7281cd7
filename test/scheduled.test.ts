import { createExecutionContext, createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { catalogCache, catalogDb, eventDocFromRow, findEventRow } from "../lib/catalog";
import { orderStores, shardNames } from "../lib/order-store";
import { resetBreakers, resetSandbox } from "../lib/payments";
import { reconcileEvent } from "../lib/reconcile";
import { minuteOf, rollUp } from "../lib/rollups";
import { shardFor } from "../lib/shards";
import worker from "../workers/index";
import { RECONCILE_EVENTS_PER_RUN, reconcileActiveEvents } from "../workers/scheduled";
import { call, createEvent, type EventBody, tokenFor } from "./helpers";

let organizer: string;
let admin: string;
beforeAll(async () => {
  organizer = await tokenFor("org-cron", "organizer");
  admin = await tokenFor("admin-cron", "admin");
  resetSandbox();
  resetBreakers();
});

async function runCron(at = Date.now()) {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ scheduledTime: at, cron: "* * * * *" }), env, ctx);
}

describe("analytics rollups", () => {
  it("equal a recount of the raw events, and re-running changes nothing", async () => {
    const kinds = ["queue.joined", "queue.admitted", "hold.created", "hold.expired", "order.paid"];
    const base = Date.parse("2026-11-24T08:00:00Z");
    const raw = Array.from({ length: 400 }, (_, i) => ({
      id: `raw-${i}`,
      kind: kinds[(i * 7) % kinds.length] as string,
      eventId: `evt_rollup${i % 3}`,
      at: new Date(base + ((i * 7919) % (15 * 60_000))).toISOString(),
      quantity: (i % 4) + 1,
      amount: (i % 5) * 100,
    }));
    const stmt = env.CATALOG_DB.prepare(
      "INSERT INTO analytics_events (id, kind, event_id, at, quantity, amount) VALUES (?, ?, ?, ?, ?, ?)",
    );
    await env.CATALOG_DB.batch(raw.map((r) => stmt.bind(r.id, r.kind, r.eventId, r.at, r.quantity, r.amount)));
    for (let run = 0; run < 2; run++) await rollUp(env.CATALOG_DB, new Date(base), new Date(base + 15 * 60_000));
    const expected = new Map<string, { count: number; quantity: number; amount: number }>();
    for (const r of raw) {
      const k = `${r.eventId}|${minuteOf(r.at)}|${r.kind}`;
      const e = expected.get(k) ?? { count: 0, quantity: 0, amount: 0 };
      e.count++;
      e.quantity += r.quantity;
      e.amount += r.amount;
      expected.set(k, e);
    }
    const rows = (
      await env.CATALOG_DB.prepare("SELECT * FROM analytics_minute WHERE event_id LIKE 'evt_rollup%'").all<{
        event_id: string;
        minute: string;
        kind: string;
        count: number;
        quantity: number;
        amount: number;
      }>()
    ).results;
    expect(rows.length).toBe(expected.size);
    for (const r of rows)
      expect({ count: r.count, quantity: r.quantity, amount: r.amount }).toEqual(expected.get(`${r.event_id}|${r.minute}|${r.kind}`));
  });
});

async function sellTo(ev: EventBody, buyers: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const b of buyers) {
    const t = await tokenFor(b, "buyer");
    const h = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token: t, json: { sectionId: "floor", quantity: 1 } });
    const holdId = ((await h.json()) as { hold: { id: string } }).hold.id;
    const o = await call("/v1/orders", { method: "POST", token: t, json: { holdId, payment: { method: "sandbox", token: "tok_ok" } } });
    expect(o.status).toBe(201);
    ids.push(((await o.json()) as { order: { id: string } }).order.id);
  }
  return ids;
}

async function drained(ids: string[]): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    let n = 0;
    for (const id of ids)
      for (const s of ["SHARD_0", "SHARD_1"] as const)
        n += (await env[s].prepare("SELECT count(*) AS n FROM orders WHERE id = ?").bind(id).first<{ n: number }>())?.n ?? 0;
    if (n === ids.length) return;
    if (Date.now() > deadline) throw new Error("queues did not drain");
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("reconciliation", () => {
  it("finds an order removed from its shard and one duplicated into another, and the cron records them", async () => {
    const ev = await createEvent(organizer);
    const buyers = ["rec-a", "rec-b", "rec-c"];
    const ids = await sellTo(ev, buyers);
    await drained(ids);
    const check = async () => {
      const res = await call(`/v1/admin/reconciliation/${ev.id}?graceMs=0`, { method: "POST", token: admin });
      expect(res.status).toBe(200);
      return (await res.json()) as {
        soldInInventory: number;
        storedInShards: number;
        missing: string[];
        extra: string[];
        duplicated: string[];
      };
    };
    expect(await check()).toMatchObject({ soldInInventory: 3, storedInShards: 3, missing: [], extra: [], duplicated: [] });

    const [removed, copied] = ids as [string, string];
    const shardOf = (buyer: string) => shardFor(buyer, ["SHARD_0", "SHARD_1"]) as "SHARD_0" | "SHARD_1";
    await env[shardOf("rec-a")].prepare("DELETE FROM orders WHERE id = ?").bind(removed).run();
    const other = shardOf("rec-b") === "SHARD_0" ? "SHARD_1" : "SHARD_0";
    const row = await env[shardOf("rec-b")]
      .prepare("SELECT * FROM orders WHERE id = ?")
      .bind(copied)
      .first<Record<string, string | number | null>>();
    if (!row) throw new Error("missing row");
    const cols = Object.keys(row);
    await env[other]
      .prepare(`INSERT INTO orders (${cols.join(",")}) VALUES (${cols.map(() => "?").join(",")})`)
      .bind(...cols.map((c) => row[c] ?? null))
      .run();

    expect(await check()).toMatchObject({ soldInInventory: 3, missing: [removed], duplicated: [copied], extra: [] });

    // The cron asks the DOs that reported sales to the event's WaitingRoom: wait for the report.
    await soldReported(ev.id, 3);
    // The cron judges only orders older than its grace period (5 min): run it "10 minutes later".
    await runCron(Date.now() + 10 * 60_000);
    const runs = (await (await call("/v1/admin/reconciliation", { token: admin })).json()) as {
      runs: { eventId: string; missing: string[]; duplicated: string[] }[];
    };
    expect(runs.runs.find((r) => r.eventId === ev.id)).toMatchObject({ missing: [removed], duplicated: [copied] });
  });
});

/** Waits until the Inventory DOs of an event have reported `sold` places to its WaitingRoom. */
async function soldReported(eventId: string, sold: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const res = await call(`/v1/events/${eventId}/availability`);
    const body = (await res.json()) as { sections: { sold: number }[] };
    if (body.sections.reduce((n, x) => n + x.sold, 0) >= sold) return;
    if (Date.now() > deadline) throw new Error("sales not reported");
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("reconciliation, walked by the cron", () => {
  it("reaches every event across runs within a bounded number of Inventory DO calls per run, asking only DOs that sold", async () => {
    const evs = [await createEvent(organizer), await createEvent(organizer), await createEvent(organizer)];
    const unsold = await createEvent(organizer);
    const ids: string[] = [];
    for (const [i, ev] of evs.entries()) ids.push(...(await sellTo(ev, [`walk-${i}`])));
    await drained(ids);
    for (const ev of evs) await soldReported(ev.id, 1);

    const seen = new Map<string, number>();
    const later = new Date(Date.now() + 10 * 60_000);
    // Budget 1: at most one event that sold per run (events that sold nothing cost no DO call). Every event on sale
    // (this file's others too) is reached within as many runs as there are events.
    for (let run = 0; run < 40 && evs.some((e) => !seen.has(e.id)); run++) {
      const results = await reconcileActiveEvents(env, later, 1);
      expect(results.length).toBeLessThanOrEqual(RECONCILE_EVENTS_PER_RUN);
      expect(results.filter((r) => r.objectsAsked > 0).length).toBeLessThanOrEqual(1);
      for (const r of results) seen.set(r.eventId, r.objectsAsked);
    }
    for (const ev of evs) expect(seen.get(ev.id)).toBe(1); // one GA shard sold; the other shard and the seated section not asked
    // An event that sold nothing costs no Inventory DO call.
    for (let run = 0; run < 40 && !seen.has(unsold.id); run++)
      for (const r of await reconcileActiveEvents(env, later, 1)) seen.set(r.eventId, r.objectsAsked);
    expect(seen.get(unsold.id)).toBe(0);

    // A full budget walks everything in one run and reports nothing wrong for these events.
    const all = await reconcileActiveEvents(env, later, 10_000);
    for (const ev of evs)
      expect(all.find((r) => r.eventId === ev.id)).toMatchObject({ soldInInventory: 1, storedInShards: 1, missing: [], extra: [] });
  });

  it("still finds a stored order's owner when that DO has not reported (never calls it extra)", async () => {
    const ev = await createEvent(organizer);
    const ids = await sellTo(ev, ["unreported"]);
    await drained(ids);
    const later = new Date(Date.now() + 10 * 60_000).getTime();
    const resolver = orderStores(env);
    const row = await findEventRow(catalogDb(env.CATALOG_DB), ev.id);
    if (!row) throw new Error("event not in the catalog");
    const r = await reconcileEvent({ inventory: env.INVENTORY, stores: shardNames(env).map(resolver) }, eventDocFromRow(row), {
      now: later,
      sold: [],
    });
    await resolver.close();
    expect(r).toMatchObject({ soldInInventory: 1, storedInShards: 1, extra: [], missing: [], objectsAsked: 1 });
  });
});

describe("stats", () => {
  it("shows the organizer sales, revenue and the funnel from the rollups", async () => {
    const ev = await createEvent(organizer);
    const ids = await sellTo(ev, ["st-a", "st-b"]);
    await drained(ids);
    // Analytics are queued after the response; wait for the raw events, then roll up.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const n =
        (await env.CATALOG_DB.prepare("SELECT count(*) AS n FROM analytics_events WHERE event_id = ?").bind(ev.id).first<{ n: number }>())
          ?.n ?? 0;
      if (n >= 4) break;
      if (Date.now() > deadline) throw new Error(`analytics did not arrive (${n})`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await rollUp(env.CATALOG_DB, new Date(Date.now() - 3_600_000), new Date(Date.now() + 60_000));
    const res = await call(`/v1/events/${ev.id}/stats`, { token: organizer });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { revenue: number; funnel: Record<string, number>; ordersPerMinute: { orders: number }[] };
    expect(body.revenue).toBe(2 * 5000);
    expect(body.funnel).toMatchObject({ held: 2, paid: 2 });
    expect(body.ordersPerMinute.reduce((n, m) => n + m.orders, 0)).toBe(2);
    expect((await call(`/v1/events/${ev.id}/stats`, { token: await tokenFor("org-other", "organizer") })).status).toBe(404);
    expect((await call(`/v1/events/${ev.id}/stats`, { token: await tokenFor("b", "buyer") })).status).toBe(403);
  });
});

describe("popular events fallback", () => {
  it("serves the popular list the cron published when the primary list fails", async () => {
    const ev = await createEvent(organizer);
    await runCron();
    expect(await env.CATALOG_KV.get("events:popular")).toContain(ev.id);
    // Break the primary list: no KV copy, no cache, and D1 failing.
    await env.CATALOG_KV.delete("events:list");
    catalogCache.clear();
    await env.CATALOG_DB.prepare("ALTER TABLE events RENAME TO events_offline").run();
    try {
      const res = await call("/v1/events");
      expect(res.status).toBe(200);
      expect(res.headers.get("X-Fallback")).toBe("popular-events");
      const body = (await res.json()) as { events: { id: string }[] };
      expect(body.events.map((e) => e.id)).toContain(ev.id);
    } finally {
      await env.CATALOG_DB.prepare("ALTER TABLE events_offline RENAME TO events").run();
    }
    catalogCache.clear();
    const ok = await call("/v1/events");
    expect(ok.headers.get("X-Fallback")).toBeNull();
  });
});

describe("stats funnel with the waiting room", () => {
  it("counts joined and admitted buyers from the WaitingRoom DO", async () => {
    const ev = await createEvent(organizer, { waitingRoom: { enabled: true, admitPerMinute: 6000 } });
    for (const b of ["wr-a", "wr-b", "wr-c"]) {
      const res = await call(`/v1/events/${ev.id}/queue`, { method: "POST", token: await tokenFor(b, "buyer") });
      expect(res.status).toBe(202);
    }
    const deadline = Date.now() + 15_000;
    let funnel = { joined: 0, admitted: 0 };
    while (Date.now() < deadline) {
      funnel = ((await (await call(`/v1/events/${ev.id}/stats`, { token: organizer })).json()) as { funnel: typeof funnel }).funnel;
      if (funnel.joined >= 3) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(funnel.joined).toBe(3);
    expect(funnel.admitted).toBeLessThanOrEqual(3);
  });
});

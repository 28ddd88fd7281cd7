import { describe, expect, it } from "vitest";
import type { History, HistoryRecord } from "../../bench/drop/history.ts";
import { series, summarize } from "../../bench/drop/report.ts";

/**
 * The drop's report: the per-second series, tickets per minute to the last sale and to 90 % sold, and the
 * client's own figures (timer lag, backlog, CPU) and verdict from its once-a-second samples.
 */
describe("drop report", () => {
  it("summarizes a history with the client's lag, backlog and CPU", () => {
    const records: HistoryRecord[] = [];
    for (let i = 0; i < 2_000; i++) {
      const start = 30_000 + (i % 1_000) * 100;
      records.push({
        kind: "request",
        id: i + 1,
        buyer: `b${i}`,
        step: "poll",
        method: "GET",
        path: "/q",
        attempt: 1,
        start,
        end: start + 5,
        status: 200,
      });
    }
    records.push({
      kind: "request",
      id: 2_001,
      buyer: "b1",
      step: "pay",
      method: "POST",
      path: "/v1/orders",
      attempt: 1,
      start: 40_000,
      end: 40_100,
      status: 201,
      seen: { quantity: 2 },
    });
    for (let s = 1; s <= 150; s++)
      records.push({
        kind: "client",
        at: s * 1_000,
        lag: { fired: 10, p50: 1, p99: s === 50 ? 400 : 5, max: s === 50 ? 900 : 8 },
        live: 10,
        backlog: s < 20 ? 100 : 0,
        inFlight: 64,
        queued: 3,
        cpu: { client: 0.1, server: 0.5 },
      });
    records.push({ kind: "backlog", buyer: "b2", arrived: 10_000, started: 25_000 });
    const h: History = { eventId: "evt_x", origin: 0, openAt: 30_000, perCustomerLimit: 4, capacity: { ga: 10 }, records };
    const s = series(h);
    expect(s.t.length).toBe(131);
    expect(s.client.lagP99[49]).toBe(400);
    const sum = summarize(h, { buyers: 20_000, seats: 10, admitPerMinute: 6_000, outcomes: {}, sold: 2, orders: 1 });
    expect(sum.sellSeconds).toBe(10.1);
    expect(sum.ticketsPerMinute90).toBe(11);
    expect(sum.client).toMatchObject({
      seconds: 150,
      laggingSeconds: 1,
      lagP99Max: 400,
      lagMax: 900,
      backlogBuyers: 1,
      backlogMax: 100,
      clientCores: 0.1,
      serverCores: 0.5,
    });
    expect(sum.client.verdict).toMatch(/^the client kept up but for 1 of 150 s/);
  });
});

/**
 * bench/orders: orders accepted per second end to end (hold + pay + answer) with the write-behind
 * design, the queue's drain rate into 1, 2 and 4 order shards, and — same run, same machine — the same
 * checkout done synchronously (the order written to its shard before answering). Prints the ratio and
 * the p99 of both.
 *
 * Path: HTTP over loopback → workerd via miniflare with unsafeDirectSockets (no dev proxy) → edge →
 * CustomerLedger + Inventory DOs → sandbox payment (tok_ok) → orders queue → consumer → D1 shard(s).
 * Rate limits off (they would throttle the benchmark's few buyers), request logs off.
 *
 * Env: ORDERS (1200), CONCURRENCY (32), PORT (8797), SHARDS ("1,2,4").
 */
import os from "node:os";
import { counter, percentile, startBreakwater } from "./lib/breakwater-process.ts";
import { envInt } from "./lib/options.ts";
import { runInfo, writeResults } from "./lib/results.ts";

const N = envInt("ORDERS", 1_200, 1, 1_000_000);
const C = envInt("CONCURRENCY", 32, 1, 1_024);
const PORT = envInt("PORT", 8797, 1_024, 65_535);
const SHARD_COUNTS = (process.env.SHARDS ?? "1,2,4").split(",").map(Number);
const ALL_SHARDS = ["SHARD_0", "SHARD_1", "SHARD_2", "SHARD_3"];

interface Run {
  mode: "write-behind" | "synchronous";
  shards: number;
  orders: number;
  seconds: number;
  ordersPerSecond: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
  /** Write-behind only: all orders in their shards after this many seconds from the start. */
  drainedAfterSeconds?: number;
  drainPerSecond?: number;
  drainPerShardPerSecond?: number;
}

async function run(mode: Run["mode"], shards: number): Promise<Run> {
  const bw = await startBreakwater(PORT, {
    ORDER_SHARDS: ALL_SHARDS.slice(0, shards).join(","),
    CHECKOUT_WRITE: mode === "synchronous" ? "sync" : "queue",
  });
  try {
    const organizer = await bw.token("bench-org", "organizer");
    const admin = await bw.token("bench-admin", "admin");
    const buyerCount = Math.ceil(N / 40) + C;
    const buyers = await Promise.all(Array.from({ length: buyerCount }, (_, i) => bw.token(`bench-buyer-${i}`, "buyer")));
    const now = Date.now();
    const created = await bw.request(
      "POST",
      "/v1/events",
      {
        name: "Bench orders",
        venue: "Loopback",
        startsAt: new Date(now + 86_400_000).toISOString(),
        saleStartsAt: new Date(now - 60_000).toISOString(),
        currency: "EUR",
        perCustomerLimit: 50,
        sections: [{ id: "ga", name: "GA", kind: "ga", price: 4500, capacity: N + 100, shards: 4 }],
      },
      organizer,
    );
    if (created.status !== 201) throw new Error(`create event ${created.status} ${created.body}`);
    const eventId = (JSON.parse(created.body) as { event: { id: string } }).event.id;
    const ackedBefore = counter((await bw.request("GET", "/metrics", undefined, admin)).body, "breakwater_queue_messages_total", {
      queue: "orders",
      action: "acked",
    });

    const latencies: number[] = [];
    let errors = 0;
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: C }, async () => {
        for (;;) {
          const i = next++;
          if (i >= N) return;
          const token = buyers[i % buyerCount] as string;
          const t0 = performance.now();
          const h = await bw.request("POST", `/v1/events/${eventId}/holds`, { sectionId: "ga", quantity: 1 }, token);
          if (h.status !== 201) {
            if (errors++ < 3) console.error(`hold ${h.status} ${h.body.slice(0, 200)}`);
            continue;
          }
          const holdId = (JSON.parse(h.body) as { hold: { id: string } }).hold.id;
          const o = await bw.request("POST", "/v1/orders", { holdId, payment: { method: "sandbox", token: "tok_ok" } }, token);
          if (o.status !== 201) {
            if (errors++ < 3) console.error(`order ${o.status} ${o.body.slice(0, 200)}`);
            continue;
          }
          latencies.push(performance.now() - t0);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    const result: Run = {
      mode,
      shards,
      orders: latencies.length,
      seconds,
      ordersPerSecond: latencies.length / seconds,
      p50: percentile(latencies, 50),
      p95: percentile(latencies, 95),
      p99: percentile(latencies, 99),
      errors,
    };
    if (mode === "write-behind") {
      const deadline = Date.now() + 120_000;
      for (;;) {
        const acked = counter((await bw.request("GET", "/metrics", undefined, admin)).body, "breakwater_queue_messages_total", {
          queue: "orders",
          action: "acked",
        });
        if (acked - ackedBefore >= latencies.length) break;
        if (Date.now() > deadline) throw new Error(`queue did not drain: ${acked - ackedBefore}/${latencies.length}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      result.drainedAfterSeconds = (performance.now() - started) / 1000;
      result.drainPerSecond = latencies.length / result.drainedAfterSeconds;
      result.drainPerShardPerSecond = result.drainPerSecond / shards;
    }
    return result;
  } finally {
    await bw.stop();
  }
}

console.log(`bench/orders: ${N} orders (hold + pay), ${C} concurrent buyers, ${os.cpus().length} cores`);
console.log("Path: HTTP → workerd (miniflare, unsafeDirectSockets, no dev proxy) → edge → DOs → sandbox payment → queue → D1 shards\n");
const runs: Run[] = [];
for (const shards of SHARD_COUNTS) {
  runs.push(await run("write-behind", shards));
  console.log(
    `  write-behind, ${shards} shard(s): ${runs.at(-1)?.ordersPerSecond.toFixed(0)} orders/s, drained at ${runs.at(-1)?.drainPerSecond?.toFixed(0)}/s`,
  );
}
const syncShards = SHARD_COUNTS.includes(2) ? 2 : (SHARD_COUNTS[0] ?? 1);
runs.push(await run("synchronous", syncShards));
console.log(`  synchronous, ${syncShards} shard(s): ${runs.at(-1)?.ordersPerSecond.toFixed(0)} orders/s`);

const f = (n: number | undefined, d = 0) => (n === undefined ? "–" : n.toFixed(d));
console.log("\n| mode | shards | orders | orders/s | p50 ms | p95 ms | p99 ms | errors | drained (s) | drain/s | drain/s per shard |");
console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const r of runs)
  console.log(
    `| ${r.mode} | ${r.shards} | ${r.orders} | ${f(r.ordersPerSecond)} | ${f(r.p50, 1)} | ${f(r.p95, 1)} | ${f(r.p99, 1)} | ${r.errors} | ${f(r.drainedAfterSeconds, 1)} | ${f(r.drainPerSecond)} | ${f(r.drainPerShardPerSecond)} |`,
  );
const wb = runs.find((r) => r.mode === "write-behind" && r.shards === syncShards);
const sync = runs.find((r) => r.mode === "synchronous");
if (wb && sync)
  console.log(
    `\nwrite-behind vs synchronous (${syncShards} shards): ${(wb.ordersPerSecond / sync.ordersPerSecond).toFixed(2)}× the throughput; p99 ${wb.p99.toFixed(1)} ms vs ${sync.p99.toFixed(1)} ms`,
  );
const file = writeResults("orders", {
  ...runInfo(),
  orders: N,
  concurrency: C,
  drainPerShardPerSecond: wb?.drainPerShardPerSecond,
  runs,
});
console.log(`wrote ${file}`);

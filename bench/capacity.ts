/**
 * bench/capacity: the capacity model. Turns figures measured locally (bench/results/*.json, newest of
 * each kind) and the platform's documented per-object limits into what a given peak needs: edge
 * requests/s, Inventory DOs (GA shards), queues, order shards, and an estimate of the bill for the drop.
 *
 * It is arithmetic, not a load test: every input is printed with where it came from, so a reader can
 * redo it. Local figures come from one 2-core machine where all Durable Objects share one workerd
 * process; on Cloudflare each object runs on its own machine, so per-object platform figures (not the
 * local aggregate) bound the per-shard rate. The smaller of the two is used.
 *
 * Env: BUYERS (1000000), ARRIVAL_SECONDS (60), SEATS (50000), SELL_OUT_MINUTES (10),
 * READS_PER_BUYER (12), POLL_SECONDS (5), HOLD_ATTEMPTS (1.5), CONVERSION (0.85), SHARDS_SEATS_PER_SECTION (2000)
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { envInt, envNumber } from "./lib/options.ts";

const root = path.resolve(import.meta.dirname, "..");

const BUYERS = envInt("BUYERS", 1_000_000, 1, 1e9);
const ARRIVAL_S = envNumber("ARRIVAL_SECONDS", 60, 1, 86_400);
const SEATS = envInt("SEATS", 50_000, 1, 1e8);
const SELL_OUT_MIN = envNumber("SELL_OUT_MINUTES", 10, 0.1, 10_080);
const READS = envNumber("READS_PER_BUYER", 12, 0, 10_000);
const POLL_S = envNumber("POLL_SECONDS", 5, 0.1, 3_600);
const HOLD_ATTEMPTS = envNumber("HOLD_ATTEMPTS", 1.5, 1, 100);
const CONVERSION = envNumber("CONVERSION", 0.85, 0, 1);
const SEATS_PER_SECTION = envInt("SHARDS_SEATS_PER_SECTION", 2_000, 1, 1e8);

/** Platform figures (Cloudflare docs, read 2026-11). */
const PLATFORM = {
  doRequestsPerSecond: 1_000, // soft limit per object
  doWritesPerSecond: 350, // "200–500 when each request writes storage": midpoint
  queueMessagesPerSecond: 5_000, // per queue
  d1WritesPerSecond: 1_000, // one query at a time per database; ~1 ms per small write (assumed)
  price: {
    workerRequestPerM: 0.3,
    cpuMsPerM: 0.02,
    doRequestPerM: 0.15,
    doGbSecondPerM: 12.5,
    kvReadPerM: 0.5,
    d1RowWrittenPerM: 1.0,
    queueOpPerM: 0.4, // a message is ~3 ops: write, read, delete
  },
};

function newest(prefix: string): Record<string, unknown> | null {
  const dir = path.join(root, "bench", "results");
  if (!existsSync(dir)) return null;
  const files = readdirSync(dir)
    .filter((f) => f.startsWith(prefix) && f.endsWith(".json"))
    .sort();
  const f = files.at(-1);
  return f ? (JSON.parse(readFileSync(path.join(dir, f), "utf8")) as Record<string, unknown>) : null;
}

interface HoldRow {
  scenario: string;
  perSecond: number;
}
const holds = newest("holds-");
const holdRows = (holds?.rows as HoldRow[] | undefined) ?? [];
const localSeated = holdRows.find((r) => r.scenario.includes("seated"))?.perSecond;
const orders = newest("orders-");
const localDrainPerShard = (orders?.drainPerShardPerSecond as number | undefined) ?? undefined;

const perDoHolds = Math.min(PLATFORM.doWritesPerSecond, localSeated ?? Number.POSITIVE_INFINITY);
const sellRate = SEATS / (SELL_OUT_MIN * 60); // seats sold per second at the target pace
const holdRate = sellRate * HOLD_ATTEMPTS; // hold attempts per second (each buyer holds ~1 seat at a time)
const admitPerSecond = sellRate / CONVERSION; // buyers admitted per second to sustain that pace
const sections = Math.ceil(SEATS / SEATS_PER_SECTION);
const holdsPerSection = holdRate / sections;
const gaShards = Math.max(1, Math.ceil(holdsPerSection / perDoHolds));

const joinRate = BUYERS / ARRIVAL_S;
const waitSeconds = BUYERS / admitPerSecond;
const pollRate = BUYERS / POLL_S; // at the peak, everyone waiting polls
const readRate = (BUYERS * READS) / ARRIVAL_S;
const edgePeak = joinRate + pollRate + readRate + holdRate + sellRate;

const ordersPerSecond = sellRate / 2; // ~2 tickets per order
const queueMessagesPerSecond = ordersPerSecond * 3 + holdRate; // order + notification + analytics per order, analytics per hold
const queues = Math.ceil(queueMessagesPerSecond / PLATFORM.queueMessagesPerSecond);
const shardRate = Math.min(PLATFORM.d1WritesPerSecond, localDrainPerShard ?? Number.POSITIVE_INFINITY);
const orderShards = Math.max(1, Math.ceil((ordersPerSecond * 3) / shardRate)); // order + tickets + outbox rows ≈ 3 writes

// Totals for the drop.
const totalReads = BUYERS * READS;
// Buyers poll until admitted or until the room announces the sell-out, whichever comes first.
const pollWindow = Math.min(waitSeconds, SELL_OUT_MIN * 60);
const totalPolls = BUYERS * (pollWindow / 2 / POLL_S); // the average buyer waits half of that
const totalEdge = BUYERS + totalPolls + totalReads + SEATS * HOLD_ATTEMPTS + SEATS / 2;
const doRequests = SEATS * HOLD_ATTEMPTS * 2 + (SEATS / 2) * 5 + (BUYERS / 1_000) * 60; // holds (ledger + inventory), checkouts, room polls by isolates
const p = PLATFORM.price;
const cost = {
  workers: (totalEdge / 1e6) * p.workerRequestPerM + ((totalEdge * 1.5) / 1e6) * p.cpuMsPerM,
  durableObjects:
    (doRequests / 1e6) * p.doRequestPerM + (((sections * gaShards + 50) * SELL_OUT_MIN * 60 * 0.128) / 1e6) * p.doGbSecondPerM,
  kv: ((totalReads * 0.02) / 1e6) * p.kvReadPerM, // ≤ 2 % of reads miss the micro-cache and Cache API
  d1: (((SEATS / 2) * 3) / 1e6) * p.d1RowWrittenPerM,
  queues: ((((SEATS / 2) * 3 + SEATS * HOLD_ATTEMPTS) * 3) / 1e6) * p.queueOpPerM,
};
const totalCost = Object.values(cost).reduce((a, b) => a + b, 0);

const f = (n: number, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
console.log("Breakwater capacity model\n");
console.log("Inputs");
console.log(`  peak: ${f(BUYERS)} buyers arriving within ${ARRIVAL_S} s; ${f(SEATS)} seats; sell-out target ${SELL_OUT_MIN} min`);
console.log(
  `  per buyer: ${READS} catalog reads, a queue poll every ${POLL_S} s, ${HOLD_ATTEMPTS} hold attempts; conversion ${CONVERSION}`,
);
console.log(
  `  holds per Inventory DO: ${f(perDoHolds)}/s = min(platform ${PLATFORM.doWritesPerSecond}/s, local ${localSeated ? `${f(localSeated)}/s from ${holds?.date}` : "n/a"})`,
);
console.log(
  `  order writes per shard: ${f(shardRate)}/s = min(platform assumption ${PLATFORM.d1WritesPerSecond}/s, local drain ${localDrainPerShard ? f(localDrainPerShard) : "n/a"})`,
);
console.log("\nNeeds");
console.log(
  `  edge peak:            ${f(edgePeak)} req/s (joins ${f(joinRate)}, polls ${f(pollRate)}, reads ${f(readRate)}) — stateless, spread over Cloudflare's locations`,
);
console.log(
  `  admission rate:       ${f(admitPerSecond, 1)} buyers/s (${f(admitPerSecond * 60)}/min); last buyer waits ~${f(waitSeconds / 60, 1)} min`,
);
console.log(
  `  hold rate:            ${f(holdRate, 1)}/s over ${sections} sections → ${f(holdsPerSection, 1)}/s per section → GA shards K = ${gaShards}`,
);
console.log(`  queue messages:       ${f(queueMessagesPerSecond, 1)}/s → ${queues} queue(s) per kind`);
console.log(`  order shards:         ${orderShards} D1 database(s) for ${f(ordersPerSecond, 1)} orders/s`);
console.log("\nEstimated usage cost of the drop (list prices, beyond the plan's included usage)");
for (const [k, v] of Object.entries(cost)) console.log(`  ${k.padEnd(16)} $${f(v, 2)}`);
console.log(`  ${"total".padEnd(16)} $${f(totalCost, 2)}`);

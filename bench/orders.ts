/**
 * bench/orders: orders accepted per second end to end (hold + pay + answer) with the write-behind design,
 * the queue's drain into 1, 2 and 4 order shards, the same checkout done synchronously (the order written
 * to its shard before answering), both again with a slow shard and through a shard outage, and a
 * PostgreSQL checkout baseline behind a minimal Node HTTP server, at the same concurrency. Saturation: the
 * healthy write-behind run (2 shards) and the baseline also run at each of SATURATION's concurrencies, and
 * each one's saturation throughput is its highest orders/s whose p99 stays within 1 s.
 *
 * Path: HTTP over loopback → workerd via miniflare with unsafeDirectSockets (no dev proxy) → edge →
 * LimitLedger + Inventory DOs → sandbox payment (tok_ok) → orders queue → consumer → D1 shard(s).
 * Rate limits off (they would throttle the benchmark's few buyers), request logs off.
 *
 * Runs (each in a fresh server):
 * - `write-behind` with each of SHARDS order shards, and `synchronous` with 2 (or the first of SHARDS);
 * - `slow`: every shard write takes SLOW_MS more, one at a time per shard as D1 (the `shard_slow` fault
 *   window), write-behind and synchronous;
 * - `outage`: every shard write fails for OUTAGE_SECONDS from the start (`shard_writes`), write-behind and
 *   synchronous; checkouts run at least OUTAGE_SECONDS + 10 s, so the answers span the outage;
 * - `pg`: POST /hold (SKIP LOCKED) then POST /checkout (one transaction: seat sold, order and ticket rows)
 *   against bench/lib/baseline-server.ts.
 * After every Breakwater run the bench waits until every order is in its shard (the admin reconciliation
 * with no grace: nothing missing, nothing extra, nothing twice) and reports when; an order still missing
 * at the deadline (300 s) is reported as lost; then it waits until every order's confirmation mail has
 * reached the mail sink. p99 is each checkout's hold + order time. Mail goes over HTTP to a local stand-in
 * of the mail API (bench/lib/mail-sink.ts), as production sends it; `MAIL=mailbox` keeps the local KV mailbox.
 *
 * Env: ORDERS (1200), CONCURRENCY (32: the stated load of every run), SATURATION ("32,64,128,256": the steps of
 * the saturation runs; "" for none), PORT (8797; the baseline PORT+3), SHARDS ("1,2,4"),
 * SCENARIOS ("healthy,slow,outage"), SLOW_MS (50), OUTAGE_SECONDS (30), SKIP ("pg" to skip the baseline),
 * BASELINE_POOL (the baseline server's PostgreSQL connections, 32),
 * MAIL (sink; the sink listens on PORT+4), GA_SHARDS (1: the section in one Inventory DO, as the baseline keeps it in one
 * table; a large sale spreads a GA section over several, each on its own machine in production, where locally
 * they all share workerd's one thread), RESULTS_TAG. Needs PostgreSQL at 127.0.0.1:5432 for the baseline (database breakwater_bench, created
 * when missing).
 */
import { spawn } from "node:child_process";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import postgres from "postgres";
import { ensureBenchDatabase } from "./lib/bench-db.ts";
import { type BreakwaterProcess, percentile, startBreakwater } from "./lib/breakwater-process.ts";
import { benchMail, buyerId, type MailSink } from "./lib/mail-sink.ts";
import { envInt, SATURATION_P99_MS, saturationSteps } from "./lib/options.ts";
import { cpuSeconds, workerdOf } from "./lib/proc-cpu.ts";
import { runInfo, writeResults } from "./lib/results.ts";

const root = path.resolve(import.meta.dirname, "..");
const N = envInt("ORDERS", 1_200, 1, 1_000_000);
const C = envInt("CONCURRENCY", 32, 1, 1_024);
/** The concurrencies of the saturation runs (the stated load C among them). */
const STEPS = saturationSteps(C, "32,64,128,256");
const PORT = envInt("PORT", 8797, 1_024, 65_000);
const SHARD_COUNTS = (process.env.SHARDS ?? "1,2,4").split(",").map(Number);
const SCENARIOS = new Set((process.env.SCENARIOS ?? "healthy,slow,outage").split(",").filter(Boolean));
const SLOW_MS = envInt("SLOW_MS", 50, 1, 5_000);
const OUTAGE_SECONDS = envInt("OUTAGE_SECONDS", 30, 1, 600);
const SKIP = new Set((process.env.SKIP ?? "").split(",").filter(Boolean));
const GA_SHARDS = envInt("GA_SHARDS", 1, 1, 16);
const ALL_SHARDS = ["SHARD_0", "SHARD_1", "SHARD_2", "SHARD_3"];
const DRAIN_DEADLINE_MS = 300_000;
const mail = await benchMail(PORT + 4);

type Fault = "none" | "slow" | "outage";

interface Run {
  mode: "write-behind" | "synchronous" | "postgres";
  fault: Fault;
  shards: number;
  /** Concurrent buyers (closed loop). */
  concurrency: number;
  orders: number;
  seconds: number;
  ordersPerSecond: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
  /** Breakwater: every order in its shard this many seconds after the start (reconciliation clean). */
  drainedAfterSeconds?: number;
  drainPerSecond?: number;
  drainPerShardPerSecond?: number;
  /** Breakwater: orders sold in the Inventory DOs and still in no shard at the deadline (must be 0). */
  lost?: number;
  /** Breakwater: orders in a shard that no DO sold, or in a shard twice (must be 0). */
  extraOrDuplicated?: number;
  /** Breakwater: workerd's CPU (all threads) per order answered, ms, over the answering window (consumers included as they keep up). */
  cpuMsPerOrder?: number;
  /** Breakwater with the mail sink: every order's confirmation received this many seconds after the start. */
  mailedAfterSeconds?: number;
  /** Breakwater with the mail sink: orders whose confirmation had not arrived at the deadline. */
  unmailed?: number;
}

/** Runs checkouts with `concurrency` buyers until `n` are done and at least `minSeconds` have passed. */
async function closedLoop(
  concurrency: number,
  n: number,
  minSeconds: number,
  checkoutOnce: (i: number) => Promise<boolean>,
): Promise<{ latencies: number[]; errors: number; seconds: number }> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const started = performance.now();
  const more = () => next < n || performance.now() - started < minSeconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (more()) {
        const i = next++;
        const t0 = performance.now();
        if (await checkoutOnce(i)) latencies.push(performance.now() - t0);
        else errors++;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { latencies, errors, seconds: (performance.now() - started) / 1000 };
}

const summary = (
  mode: Run["mode"],
  fault: Fault,
  shards: number,
  concurrency: number,
  r: { latencies: number[]; errors: number; seconds: number },
): Run => ({
  mode,
  fault,
  shards,
  concurrency,
  orders: r.latencies.length,
  seconds: r.seconds,
  ordersPerSecond: r.latencies.length / r.seconds,
  p50: percentile(r.latencies, 50),
  p95: percentile(r.latencies, 95),
  p99: percentile(r.latencies, 99),
  errors: r.errors,
});

/** Opens a fault window in the server (FAULT_INJECTION is on in the bench's servers). */
async function openFault(bw: BreakwaterProcess, admin: string, fault: Fault): Promise<void> {
  if (fault === "none") return;
  const body =
    fault === "slow" ? { name: "shard_slow", seconds: 600, delayMs: SLOW_MS } : { name: "shard_writes", seconds: OUTAGE_SECONDS };
  const r = await bw.request("PUT", "/v1/admin/faults", body, admin);
  if (r.status !== 200) throw new Error(`PUT /v1/admin/faults ${r.status} ${r.body}`);
}

/** Waits until reconciliation (no grace) finds every sold order in exactly one shard; the seconds it took, and what was wrong at the deadline. */
async function drain(bw: BreakwaterProcess, admin: string, eventId: string): Promise<{ at: number; lost: number; extra: number }> {
  const deadline = Date.now() + DRAIN_DEADLINE_MS;
  for (;;) {
    const r = await bw.request("POST", `/v1/admin/reconciliation/${eventId}?graceMs=0`, undefined, admin);
    if (r.status !== 200) throw new Error(`reconciliation ${r.status} ${r.body}`);
    const res = JSON.parse(r.body) as { missing: string[]; extra: string[]; duplicated: string[] };
    const extra = res.extra.length + res.duplicated.length;
    if ((res.missing.length === 0 && extra === 0) || Date.now() > deadline)
      return { at: performance.now(), lost: res.missing.length, extra };
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Waits until the sink has received `n` mails (the same deadline as the shards); when, and how many were missing. */
async function mailsIn(sink: MailSink, n: number): Promise<{ at: number; missing: number }> {
  const deadline = Date.now() + DRAIN_DEADLINE_MS;
  while (sink.received() < n && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
  return { at: performance.now(), missing: Math.max(0, n - sink.received()) };
}

async function runBreakwater(mode: "write-behind" | "synchronous", shards: number, fault: Fault, concurrency = C): Promise<Run> {
  mail?.reset();
  const bw = await startBreakwater(PORT, {
    ORDER_SHARDS: ALL_SHARDS.slice(0, shards).join(","),
    CHECKOUT_WRITE: mode === "synchronous" ? "sync" : "queue",
    FAULT_INJECTION: "true",
    ...mail?.env,
  });
  try {
    const organizer = await bw.token("bench-org", "organizer");
    const admin = await bw.token("bench-admin", "admin");
    const minSeconds = fault === "outage" ? OUTAGE_SECONDS + 10 : 0;
    const most = Math.max(N, minSeconds * 400);
    const buyerCount = Math.ceil(most / 40) + concurrency;
    const buyers = await Promise.all(Array.from({ length: buyerCount }, (_, i) => bw.token(buyerId("bench-buyer", i), "buyer")));
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
        sections: [{ id: "ga", name: "GA", kind: "ga", price: 4500, capacity: most + 100, shards: GA_SHARDS }],
      },
      organizer,
    );
    if (created.status !== 201) throw new Error(`create event ${created.status} ${created.body}`);
    const eventId = (JSON.parse(created.body) as { event: { id: string } }).event.id;
    await openFault(bw, admin, fault);
    let shown = 0;
    const pid = workerdOf("scripts/serve.ts", PORT);
    const cpu0 = pid === undefined ? undefined : cpuSeconds(pid);
    const started = performance.now();
    const r = await closedLoop(concurrency, N, minSeconds, async (i) => {
      const token = buyers[i % buyerCount] as string;
      const h = await bw.request("POST", `/v1/events/${eventId}/holds`, { sectionId: "ga", quantity: 1 }, token);
      if (h.status !== 201) {
        if (shown++ < 3) console.error(`hold ${h.status} ${h.body.slice(0, 200)}`);
        return false;
      }
      const holdId = (JSON.parse(h.body) as { hold: { id: string } }).hold.id;
      const o = await bw.request("POST", "/v1/orders", { holdId, payment: { method: "sandbox", token: "tok_ok" } }, token);
      if (o.status !== 201) {
        if (shown++ < 3) console.error(`order ${o.status} ${o.body.slice(0, 200)}`);
        return false;
      }
      return true;
    });
    const result = summary(mode, fault, shards, concurrency, r);
    const cpu1 = pid === undefined ? undefined : cpuSeconds(pid);
    if (cpu0 !== undefined && cpu1 !== undefined) result.cpuMsPerOrder = ((cpu1 - cpu0) * 1000) / result.orders;
    const drained = await drain(bw, admin, eventId);
    result.drainedAfterSeconds = (drained.at - started) / 1000;
    result.drainPerSecond = result.orders / result.drainedAfterSeconds;
    result.drainPerShardPerSecond = result.drainPerSecond / shards;
    result.lost = drained.lost;
    result.extraOrDuplicated = drained.extra;
    if (mail) {
      const mailed = await mailsIn(mail, result.orders);
      result.mailedAfterSeconds = (mailed.at - started) / 1000;
      result.unmailed = mailed.missing;
    }
    return result;
  } finally {
    await bw.stop();
  }
}

/** The PostgreSQL checkout baseline: POST /hold then POST /checkout over loopback HTTP, `concurrency` buyers. */
async function runPostgres(concurrency = C): Promise<Run> {
  await ensureBenchDatabase();
  const sql = postgres({ host: "127.0.0.1", port: 5432, user: "postgres", database: "breakwater_bench", max: 1, onnotice: () => {} });
  try {
    await sql`DROP TABLE IF EXISTS seats, orders, tickets`;
    await sql`CREATE TABLE seats (id text PRIMARY KEY, section text NOT NULL, status text NOT NULL DEFAULT 'available', hold_id text, held_until timestamptz)`;
    await sql`CREATE INDEX seats_available ON seats (section, status, id)`;
    await sql`CREATE INDEX seats_hold ON seats (hold_id)`;
    await sql`CREATE TABLE orders (id text PRIMARY KEY, hold_id text NOT NULL UNIQUE, total integer NOT NULL, created_at timestamptz NOT NULL)`;
    await sql`CREATE TABLE tickets (id text PRIMARY KEY, order_id text NOT NULL REFERENCES orders (id), seat text NOT NULL, code text NOT NULL)`;
    await sql`INSERT INTO seats (id, section) SELECT 's' || g, 'ga' FROM generate_series(1, ${N + 100}) g`;
    await sql`ANALYZE seats`;
  } finally {
    await sql.end();
  }
  const port = PORT + 3;
  const child = spawn(process.execPath, [path.join(root, "bench/lib/baseline-server.ts"), "pg", String(port), "ga"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    child.on("exit", (code) => reject(new Error(`baseline server exited ${code}`)));
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency * 2 });
  const post = (p: string, body: unknown) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = http.request(
        `http://127.0.0.1:${port}${p}`,
        { method: "POST", agent, headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) } },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => {
            text += c.toString();
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on("error", reject);
      req.end(data);
    });
  try {
    const r = await closedLoop(concurrency, N, 0, async () => {
      const h = await post("/hold", {});
      if (h.status !== 201) return false;
      const { holdId } = JSON.parse(h.body) as { holdId: string };
      return (await post("/checkout", { holdId })).status === 201;
    });
    // Invariants of the baseline: one sold seat per order, one ticket per order, nothing sold twice.
    const check = postgres({ host: "127.0.0.1", port: 5432, user: "postgres", database: "breakwater_bench", max: 1, onnotice: () => {} });
    try {
      const [c] =
        await check`SELECT (SELECT count(*) FROM seats WHERE status = 'sold')::int AS sold, (SELECT count(*) FROM orders)::int AS orders,
        (SELECT count(*) FROM tickets)::int AS tickets, (SELECT count(DISTINCT seat) FROM tickets)::int AS seats`;
      if (
        c?.sold !== r.latencies.length ||
        c?.orders !== r.latencies.length ||
        c?.tickets !== r.latencies.length ||
        c?.seats !== r.latencies.length
      )
        throw new Error(`postgres checkout baseline inconsistent: ${JSON.stringify(c)} for ${r.latencies.length} answers`);
    } finally {
      await check.end();
    }
    return summary("postgres", "none", 1, concurrency, r);
  } finally {
    agent.destroy();
    child.kill("SIGTERM");
  }
}

console.log(
  `bench/orders: ${N} orders (hold + pay), ${C} concurrent buyers (saturation steps ${STEPS.join(", ")}), GA section in ${GA_SHARDS} Inventory DO(s), ${os.cpus().length} cores`,
);
console.log("Path: HTTP → workerd (miniflare, unsafeDirectSockets, no dev proxy) → edge → DOs → sandbox payment → queue → D1 shards\n");
const runs: Run[] = [];
const f = (n: number | undefined, d = 0) => (n === undefined ? "–" : n.toFixed(d));
const show = (r: Run) =>
  console.log(
    `  ${r.mode}${r.fault === "none" ? "" : ` (${r.fault} shard)`}, ${r.shards} shard(s), ${r.concurrency} buyers: ${f(r.ordersPerSecond)} orders/s, p99 ${f(r.p99)} ms` +
      (r.cpuMsPerOrder === undefined ? "" : `, workerd CPU ${f(r.cpuMsPerOrder, 2)} ms/order`) +
      (r.drainPerSecond === undefined ? "" : `, in the shards after ${f(r.drainedAfterSeconds, 1)} s, lost ${r.lost}`) +
      (r.mailedAfterSeconds === undefined ? "" : `, mailed after ${f(r.mailedAfterSeconds, 1)} s, unmailed ${r.unmailed}`),
  );
const syncShards = SHARD_COUNTS.includes(2) ? 2 : (SHARD_COUNTS[0] ?? 1);
if (SCENARIOS.has("healthy")) {
  for (const shards of SHARD_COUNTS)
    for (const c of shards === syncShards ? STEPS : [C]) {
      runs.push(await runBreakwater("write-behind", shards, "none", c));
      show(runs.at(-1) as Run);
    }
  runs.push(await runBreakwater("synchronous", syncShards, "none"));
  show(runs.at(-1) as Run);
}
for (const fault of ["slow", "outage"] as const) {
  if (!SCENARIOS.has(fault)) continue;
  for (const mode of ["write-behind", "synchronous"] as const) {
    runs.push(await runBreakwater(mode, syncShards, fault));
    show(runs.at(-1) as Run);
  }
}
if (!SKIP.has("pg"))
  for (const c of SCENARIOS.has("healthy") ? STEPS : [C]) {
    runs.push(await runPostgres(c));
    show(runs.at(-1) as Run);
  }

console.log(
  "\n| mode | shard fault | shards | buyers | orders | orders/s | p50 ms | p95 ms | p99 ms | errors | all in shards after (s) | drain/s per shard | lost | all mailed after (s) | unmailed |",
);
console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const r of runs)
  console.log(
    `| ${r.mode} | ${r.fault} | ${r.shards} | ${r.concurrency} | ${r.orders} | ${f(r.ordersPerSecond)} | ${f(r.p50, 1)} | ${f(r.p95, 1)} | ${f(r.p99, 1)} | ${r.errors} | ${f(r.drainedAfterSeconds, 1)} | ${f(r.drainPerShardPerSecond)} | ${r.lost ?? "–"} | ${f(r.mailedAfterSeconds, 1)} | ${r.unmailed ?? "–"} |`,
  );
const candidates = (mode: Run["mode"], fault: Fault) =>
  runs.filter((r) => r.mode === mode && r.fault === fault && (mode === "postgres" || r.shards === syncShards));
/** The run at the stated load C. */
const find = (mode: Run["mode"], fault: Fault) => candidates(mode, fault).find((r) => r.concurrency === C);
/** The saturation run: the highest rate over the steps whose p99 stays within 1 s. */
const saturated = (mode: Run["mode"]) =>
  candidates(mode, "none")
    .filter((r) => r.p99 <= SATURATION_P99_MS && r.orders > 0)
    .sort((a, b) => b.ordersPerSecond - a.ordersPerSecond)[0];
const healthy = find("write-behind", "none");
const pg = find("postgres", "none");
if (healthy && pg)
  console.log(
    `\nBreakwater write-behind / PostgreSQL checkouts at ${C} buyers: ${(healthy.ordersPerSecond / pg.ordersPerSecond).toFixed(2)}×`,
  );
const satWb = saturated("write-behind");
const satPg = saturated("postgres");
const saturation =
  satWb && satPg
    ? {
        writeBehind: { concurrency: satWb.concurrency, ordersPerSecond: satWb.ordersPerSecond, p99: satWb.p99 },
        postgres: { concurrency: satPg.concurrency, ordersPerSecond: satPg.ordersPerSecond, p99: satPg.p99 },
        ratio: satWb.ordersPerSecond / satPg.ordersPerSecond,
      }
    : undefined;
if (saturation)
  console.log(
    `At saturation (steps ${STEPS.join(", ")}, p99 <= ${SATURATION_P99_MS} ms): write-behind ${f(satWb?.ordersPerSecond)} orders/s (${satWb?.concurrency} buyers, p99 ${f(satWb?.p99)} ms), ` +
      `PostgreSQL ${f(satPg?.ordersPerSecond)} (${satPg?.concurrency} buyers, p99 ${f(satPg?.p99)} ms): ${saturation.ratio.toFixed(2)}×`,
  );
for (const fault of ["slow", "outage"] as const) {
  const wb = find("write-behind", fault);
  const sync = find("synchronous", fault);
  if (healthy && wb)
    console.log(
      `${fault} shard: write-behind p99 ${(wb.p99 / healthy.p99).toFixed(2)}× the healthy run's${sync ? `; synchronous p99 ${(sync.p99 / healthy.p99).toFixed(2)}×` : ""}`,
    );
}
const wb = runs.find((r) => r.mode === "write-behind" && r.fault === "none" && r.shards === syncShards);
const file = writeResults("orders", {
  ...runInfo(),
  orders: N,
  concurrency: C,
  saturationSteps: STEPS,
  saturation,
  gaShards: GA_SHARDS,
  slowMs: SLOW_MS,
  outageSeconds: OUTAGE_SECONDS,
  drainPerShardPerSecond: wb?.drainPerShardPerSecond,
  mail: mail ? "sink" : "mailbox",
  runs,
});
console.log(`wrote ${file}`);
await mail?.close();

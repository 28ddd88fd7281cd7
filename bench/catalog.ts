/**
 * bench/catalog: how many catalog reads per second Breakwater sustains, against a hello-world Worker on
 * the same path, with the cache hit ratio and the D1 queries the reads cost.
 *
 * Path (both servers): HTTP/1.1 keep-alive over loopback → workerd through miniflare with
 * `unsafeDirectSockets` (no dev proxy), each in a child process started like `npm run serve`
 * (scripts/serve.ts `startServer`). The load generator (bench/lib/loadgen.ts) is open-model: a fixed
 * arrival rate, latency from each request's scheduled send time.
 *
 * Scenarios, in order:
 * 1. generator ceiling: the load generator against a trivial raw-TCP target (bench/lib/trivial-target.ts),
 *    so its own limit is known and printed;
 * 2. hello-world: bench/hello-world/worker.ts (a constant response), the ceiling of the path;
 * 3. catalog, REQUEST_LOG=off: EVENTS events created through the public API, then a Zipf(ZIPF_S) mix of
 *    `GET /v1/events/:id` and LIST_SHARE of `GET /v1/events`;
 * 4. catalog, REQUEST_LOG=all (one JSON line per request, as wrangler.toml ships): same state and mix.
 * Breakwater runs with CRON=off (see {@link catalog}). The events are created in a server of their own
 * ({@link seedCatalog}); every measured server then gets the same warm-up (`warmUp` in bench/lib/catalog-mix.ts)
 * before its search.
 * Each server's maximum sustainable rate is found by stepping the offered rate (up by STEP_FACTOR while
 * steps pass, then two bisections). Sustainable: achieved ≥ 97 % of offered, no error, p99 ≤ P99_MS.
 * Hit ratio and D1 queries come from Breakwater's /metrics (counted, per step and over the run).
 *
 * Env: EVENTS (1000), ZIPF_S (1.05), LIST_SHARE (0.05), DURATION (s per step, 4), WARMUP (s per step, 1),
 * P99_MS (50), STEP_FACTOR (1.5), START_RATE (catalog, 2000), HELLO_START_RATE (4000),
 * RATES / HELLO_RATES (explicit comma-separated steps instead of the search), CONNECTIONS (128),
 * LOG_RUN (all | a sample rate such as 0.1 | skip), SKIP (comma list of ceiling, hello, catalog, hot),
 * REPEAT (1: with n > 1 the hello-world and catalog searches run n times, alternating, on the same events,
 * and the summary gives each round's ratio and their median — one round's ratio moves with where the
 * runtime's garbage collections fall and with what else the machine runs),
 * PORT (8793; hello-world PORT + 1, trivial target PORT + 2).
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  type BreakwaterProcess,
  CACHE_HIT_LAYERS,
  CACHE_LAYERS,
  type CacheLayerName,
  cacheLookups,
  counter,
  HELLO_WORLD_SCRIPT,
  seedEvents,
  startBreakwater,
  startHelloWorld,
} from "./lib/breakwater-process.ts";
import { byPopularity, catalogUrls, warmUp } from "./lib/catalog-mix.ts";
import { findMaxRate, formatStep, isSustained, type LoadResult, runLoad } from "./lib/loadgen.ts";
import { envInt, envNumber } from "./lib/options.ts";
import { cpuSeconds, workerdOf } from "./lib/proc-cpu.ts";
import { codeVersion, writeResults } from "./lib/results.ts";
import { startTrivialTarget } from "./lib/trivial-target.ts";

const rates = (name: string): number[] | undefined => {
  const v = process.env[name];
  return v
    ? v
        .split(",")
        .map(Number)
        .filter((n) => n > 0)
    : undefined;
};
const EVENTS = envInt("EVENTS", 1_000, 1, 20_000);
const ZIPF_S = envNumber("ZIPF_S", 1.05, 0, 3);
const LIST_SHARE = envNumber("LIST_SHARE", 0.05, 0, 1);
const MIX = { zipfS: ZIPF_S, listShare: LIST_SHARE };
const DURATION = envNumber("DURATION", 4, 1, 60);
const WARMUP = envNumber("WARMUP", 1, 0, 30);
const P99_MS = envNumber("P99_MS", 50, 1, 10_000);
const STEP_FACTOR = envNumber("STEP_FACTOR", 1.5, 1.05, 4);
const START_RATE = envNumber("START_RATE", 2_000, 10, 100_000);
const HELLO_START_RATE = envNumber("HELLO_START_RATE", 4_000, 10, 100_000);
const CONNECTIONS = envInt("CONNECTIONS", 128, 1, 4_096);
const LOG_RUN = process.env.LOG_RUN ?? "all";
const SKIP = new Set((process.env.SKIP ?? "").split(",").filter(Boolean));
const PORT = envInt("PORT", 8793, 1_024, 65_533);
const REPEAT = envInt("REPEAT", 1, 1, 10);
const PATH_DESCRIPTION = "HTTP/1.1 keep-alive over loopback → workerd via miniflare, unsafeDirectSockets, no dev proxy";
const criteria = { minAchieved: 0.97, p99Ms: P99_MS };

/** Catalog counters read from /metrics. */
interface Counters {
  lookups: Record<CacheLayerName, number>;
  d1: number;
  d1Catalog: number;
}

/** Cache and D1 figures of one step or run (deltas of /metrics). */
interface CacheFigures {
  reads: number;
  byLayer: Record<string, number>;
  hitRatio: number;
  d1Queries: number;
  d1CatalogQueries: number;
  d1PerThousandReads: number;
}

function delta(a: Counters, b: Counters): CacheFigures {
  const byLayer: Record<string, number> = {};
  let reads = 0;
  for (const l of CACHE_LAYERS) {
    byLayer[l] = b.lookups[l] - a.lookups[l];
    reads += byLayer[l] ?? 0;
  }
  const hits = CACHE_HIT_LAYERS.reduce((n, l) => n + (byLayer[l] ?? 0), 0);
  const d1Queries = b.d1 - a.d1;
  return {
    reads,
    byLayer,
    hitRatio: reads ? hits / reads : 0,
    d1Queries,
    d1CatalogQueries: b.d1Catalog - a.d1Catalog,
    d1PerThousandReads: reads ? (d1Queries * 1000) / reads : 0,
  };
}

/** One measured step, as written to the results file. */
interface StepRow {
  offered: number;
  achieved: number;
  sustained: boolean;
  completed: number;
  errors: LoadResult["errors"];
  statuses: Record<string, number>;
  latencyMs: LoadResult["latency"];
  sendLagMs: LoadResult["sendLag"];
  generatorCpu: number;
  /** CPU the server's workerd process used per request handled (µs), warm-up included; from /proc. */
  serverCpuUsPerRequest?: number;
  cache?: CacheFigures;
}
const row = (r: LoadResult, cache?: CacheFigures, serverCpuUs?: number): StepRow => ({
  offered: r.rate,
  achieved: Math.round(r.throughput),
  sustained: isSustained(r, criteria),
  completed: r.completed,
  errors: r.errors,
  statuses: r.statuses,
  latencyMs: r.latency,
  sendLagMs: r.sendLag,
  generatorCpu: Math.round(r.generatorCpu * 100) / 100,
  ...(serverCpuUs === undefined ? {} : { serverCpuUsPerRequest: Math.round(serverCpuUs) }),
  ...(cache ? { cache } : {}),
});

/** The step's server CPU per request, as printed after it. */
const formatCpu = (cpuUs: number | undefined): string => (cpuUs === undefined ? "" : `  server ${cpuUs.toFixed(0)} µs CPU/req`);

/** Runs `load` and measures, meanwhile, the CPU the workerd process `pid` spent per request. */
async function measured(pid: number | undefined, load: () => Promise<LoadResult>): Promise<{ r: LoadResult; cpuUs?: number }> {
  const before = pid === undefined ? undefined : cpuSeconds(pid);
  const r = await load();
  const after = pid === undefined ? undefined : cpuSeconds(pid);
  if (before === undefined || after === undefined || r.sentWithWarmup === 0) return { r };
  return { r, cpuUs: ((after - before) * 1e6) / r.sentWithWarmup };
}

/** One round of the searches (REPEAT) and its ratios. */
interface Round {
  hello?: Scenario;
  catalog?: Scenario;
  /** catalog / hello-world. */
  ratio: number | null;
}

/** A scenario's steps and its best sustained step. */
interface Scenario {
  name: string;
  steps: StepRow[];
  best?: StepRow;
  cacheOverRun?: CacheFigures;
}

const results: {
  date: string;
  /** The code measured ({@link codeVersion}). */
  code: string;
  machine: { cores: number; cpu: string; memoryGiB: number; node: string; loadAverageAtStart: number[] };
  path: string;
  settings: Record<string, unknown>;
  scenarios: Record<string, Scenario>;
  generatorCeiling?: { bestSustained: number; cpuUsPerRequest: number; singleCoreEstimate: number };
  /** With REPEAT > 1: each round's two searches (round 1 is also `scenarios`). */
  rounds?: Round[];
  summary?: Record<string, unknown>;
} = {
  date: new Date().toISOString(),
  code: codeVersion(),
  machine: {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  },
  path: PATH_DESCRIPTION,
  settings: {
    EVENTS,
    ZIPF_S,
    LIST_SHARE,
    DURATION,
    WARMUP,
    P99_MS,
    STEP_FACTOR,
    START_RATE,
    HELLO_START_RATE,
    CONNECTIONS,
    LOG_RUN,
    REPEAT,
    sustainable: `achieved ≥ 97 % of offered, 0 errors, p99 ≤ ${P99_MS} ms`,
  },
  scenarios: {},
};

/** Runs the step search for one target and prints each step. */
async function stepSearch(
  label: string,
  run: (rate: number) => Promise<LoadResult>,
  opts: {
    start: number;
    rates?: number[] | undefined;
    serverPid?: number | undefined;
    after?: (r: LoadResult) => Promise<CacheFigures | undefined>;
  },
): Promise<Scenario> {
  const steps: StepRow[] = [];
  let best: StepRow | undefined;
  await findMaxRate(
    async (rate) => {
      const { r, cpuUs } = await measured(opts.serverPid, () => run(rate));
      const cache = await opts.after?.(r);
      const s = row(r, cache, cpuUs);
      steps.push(s);
      if (s.sustained && (!best || s.offered > best.offered)) best = s;
      const c = cache
        ? `  hit ${(cache.hitRatio * 100).toFixed(1)}%  d1 ${cache.d1Queries} (${cache.d1PerThousandReads.toFixed(2)}/1k reads)`
        : "";
      console.log(formatStep(label, r, s.sustained) + formatCpu(cpuUs) + c);
      return r;
    },
    { ...criteria, start: opts.start, factor: STEP_FACTOR, refine: 2, pauseMs: 1_000, ...(opts.rates ? { rates: opts.rates } : {}) },
  );
  return { name: label, steps, ...(best ? { best } : {}) };
}

/** Scenario 1: the generator against a trivial target. */
async function generatorCeiling(): Promise<void> {
  console.log("\n[1] load generator ceiling (trivial raw-TCP target in its own process)");
  const target = await startTrivialTarget(PORT + 2);
  try {
    let best = 0;
    let us = 0;
    const steps: StepRow[] = [];
    for (const rate of [15_000, 30_000, 45_000, 60_000]) {
      const r = await runLoad({ url: () => `${target.url}/v1/events`, rate, durationSec: 2, warmupSec: 0.5, connections: CONNECTIONS });
      const ok = isSustained(r, criteria);
      steps.push(row(r));
      console.log(`${formatStep("trivial", r, ok)}  (${r.generatorCpuUsPerRequest.toFixed(1)} µs CPU/request)`);
      us = Math.max(us, r.generatorCpuUsPerRequest);
      if (ok) best = rate;
      await new Promise((res) => setTimeout(res, 500));
    }
    const singleCoreEstimate = Math.round(1e6 / us);
    results.scenarios.ceiling = { name: "generator vs trivial target", steps };
    results.generatorCeiling = { bestSustained: best, cpuUsPerRequest: Math.round(us * 10) / 10, singleCoreEstimate };
    console.log(
      `  → generator sustained ${best} req/s here; it costs ≤ ${us.toFixed(1)} µs CPU per request, so one core saturates near ${singleCoreEstimate} req/s`,
    );
  } finally {
    target.stop();
  }
}

/** Scenario 2: hello-world on the same path, same URLs. */
async function helloWorld(ids: string[]): Promise<void> {
  console.log("\n[2] hello-world Worker (bench/hello-world), same path, same URLs");
  const hello = await startHelloWorld(PORT + 1);
  try {
    const url = catalogUrls(hello.url, ids, MIX);
    await warmUp(hello.url, ids, url, { start: HELLO_START_RATE, connections: CONNECTIONS });
    results.scenarios.hello = await stepSearch(
      "hello-world",
      (rate) => runLoad({ url, rate, durationSec: DURATION, warmupSec: WARMUP, connections: CONNECTIONS }),
      { start: HELLO_START_RATE, rates: rates("HELLO_RATES"), serverPid: workerdOf(HELLO_WORLD_SCRIPT, PORT + 1) },
    );
  } finally {
    await hello.stop();
  }
}

/** Reads the catalog counters from /metrics (admin token). */
async function readCounters(bw: BreakwaterProcess, adminToken: string): Promise<Counters> {
  const { lookups, metrics } = await cacheLookups(bw, adminToken);
  return {
    lookups,
    d1: counter(metrics, "breakwater_d1_queries_total"),
    d1Catalog: counter(metrics, "breakwater_d1_queries_total", { db: "catalog" }),
  };
}

/** Scenarios 3 and 4: Breakwater with request logs off, then on (same state directory, same events). */
async function catalog(stateDir: string, eventIds: string[], extras = true): Promise<void> {
  const runOne = async (label: string, log: string, start: number): Promise<void> => {
    console.log(`\n[${log === "off" ? 3 : 4}] Breakwater catalog reads, REQUEST_LOG=${log} (Zipf s=${ZIPF_S}, ${LIST_SHARE * 100}% list)`);
    // CRON=off: the minute's cron (rollups, reconciliation of the events on sale against their Durable
    // Objects and shards) runs locally on the same JavaScript thread as the reads, and with 1,000 events on
    // sale it takes the thread for about half a second: a local artefact, not a cost of the read path.
    const bw = await startBreakwater(PORT, { STATE_DIR: stateDir, REQUEST_LOG: log, CRON: "off" }, 16);
    try {
      const admin = await bw.token("bench-admin", "admin");
      const url = catalogUrls(bw.base, eventIds, MIX);
      await warmUp(bw.base, eventIds, url, { start, connections: CONNECTIONS });
      const serverPid = workerdOf("scripts/serve.ts", PORT);
      const first = await readCounters(bw, admin);
      let before = first;
      const scenario = await stepSearch(
        label,
        (rate) => runLoad({ url, rate, durationSec: DURATION, warmupSec: WARMUP, connections: CONNECTIONS }),
        {
          start,
          rates: rates("RATES"),
          serverPid,
          after: async () => {
            const now = await readCounters(bw, admin);
            const d = delta(before, now);
            before = now;
            return d;
          },
        },
      );
      scenario.cacheOverRun = delta(first, before);
      results.scenarios[log === "off" ? "catalog" : "catalogWithLogs"] = scenario;
      if (log === "off" && extras && !SKIP.has("hot")) {
        // Context for the ratio: the same rate with every read on the single most popular event, so every
        // read is a micro-cache hit. The gap to the Zipf run is what cache misses cost on this path.
        const rate = scenario.best?.offered ?? start;
        const hotUrl = `${bw.base}/v1/events/${byPopularity(eventIds)[0] ?? ""}`;
        const { r, cpuUs } = await measured(serverPid, () =>
          runLoad({ url: () => hotUrl, rate, durationSec: DURATION, warmupSec: WARMUP, connections: CONNECTIONS }),
        );
        const hot = row(r, delta(before, await readCounters(bw, admin)), cpuUs);
        results.scenarios.catalogHotEvent = { name: "catalog, one hot event", steps: [hot], ...(hot.sustained ? { best: hot } : {}) };
        console.log(formatStep("hot event", r, hot.sustained) + formatCpu(cpuUs));
      }
    } finally {
      await bw.stop();
    }
  };
  await runOne("catalog", "off", START_RATE);
  if (extras && LOG_RUN !== "skip") {
    const best = results.scenarios.catalog?.best?.offered ?? START_RATE;
    await runOne(`catalog+log`, LOG_RUN, Math.max(100, Math.round(best * 0.5)));
  }
}

/**
 * Creates the EVENTS events through the public API in a server of their own, which then stops: the
 * servers that are measured start on that state and have served nothing but the warm-up.
 */
async function seedCatalog(stateDir: string): Promise<string[]> {
  const bw = await startBreakwater(PORT, { STATE_DIR: stateDir, CRON: "off" }, 16);
  try {
    return await seedEvents(bw, EVENTS);
  } finally {
    await bw.stop();
  }
}

const ratio = (a: StepRow | undefined, b: StepRow | undefined) => (a && b ? Math.round((a.achieved / b.achieved) * 1000) / 1000 : null);

/** Every round's catalog / hello-world ratio, sorted, and their (lower) median; undefined for a single round. */
function roundsOf(rounds: Round[] | undefined) {
  if (!rounds || rounds.length < 2) return undefined;
  const sorted = rounds
    .map((r) => r.ratio)
    .filter((x): x is number => x !== null)
    .sort((a, b) => a - b);
  const median = sorted.length ? (sorted[Math.floor((sorted.length - 1) / 2)] as number) : null;
  return { rounds, sorted, median };
}

/** Prints the summary and writes bench/results/catalog-<date>.json. */
function report(): void {
  const hello = results.scenarios.hello?.best;
  const cat = results.scenarios.catalog;
  const logged = results.scenarios.catalogWithLogs;
  const run = cat?.cacheOverRun;
  const roundStats = roundsOf(results.rounds);
  const summary = {
    path: PATH_DESCRIPTION,
    generatorCeiling: results.generatorCeiling,
    helloWorldMaxSustained: hello?.achieved ?? null,
    catalogMaxSustained: cat?.best?.achieved ?? null,
    catalogOverHelloWorld: ratio(cat?.best, hello),
    catalogWithLogsMaxSustained: logged?.best?.achieved ?? null,
    catalogWithLogsOverHelloWorld: ratio(logged?.best, hello),
    catalogAtBest: cat?.best
      ? { p50: cat.best.latencyMs.p50, p95: cat.best.latencyMs.p95, p99: cat.best.latencyMs.p99, errors: cat.best.errors.total }
      : null,
    hitRatioAtBest: cat?.best?.cache?.hitRatio ?? null,
    hitRatioOverRun: run?.hitRatio ?? null,
    d1QueriesOverRun: run?.d1Queries ?? null,
    readsOverRun: run?.reads ?? null,
    d1PerThousandReads: run?.d1PerThousandReads ?? null,
    roundRatios: roundStats?.sorted ?? null,
    medianRoundRatio: roundStats?.median ?? null,
    targets: {
      // With REPEAT > 1 the rounds' median decides, not round 1 alone.
      "catalog ≥ 60% of hello-world": ((roundStats ? roundStats.median : ratio(cat?.best, hello)) ?? 0) >= 0.6,
      "hit ratio ≥ 95%": (cat?.best?.cache?.hitRatio ?? 0) >= 0.95,
      "≤ 1 D1 query per 1,000 reads": run ? run.d1PerThousandReads <= 1 : false,
    },
  };
  results.summary = summary;
  const pct = (x: number | null | undefined) => (x === null || x === undefined ? "n/a" : `${(x * 100).toFixed(1)}%`);
  const best = (s: StepRow | undefined) =>
    s
      ? `${s.achieved} req/s (p50 ${s.latencyMs.p50} / p95 ${s.latencyMs.p95} / p99 ${s.latencyMs.p99} ms, ${s.errors.total} errors)`
      : "n/a";
  console.log(`\n== bench/catalog summary — path: ${PATH_DESCRIPTION}`);
  console.log(
    `   machine: ${results.machine.cores} cores (${results.machine.cpu}), shared with other work; sustainable = ${results.settings.sustainable}`,
  );
  if (results.generatorCeiling)
    console.log(
      `   generator: sustained ${results.generatorCeiling.bestSustained} req/s vs trivial target; ~${results.generatorCeiling.singleCoreEstimate} req/s per core`,
    );
  console.log(`   hello-world max sustained:     ${best(hello)}`);
  console.log(`   catalog max sustained (log off): ${best(cat?.best)}`);
  if (logged)
    console.log(
      `   catalog max sustained (REQUEST_LOG=${LOG_RUN}): ${best(logged.best)}  → ${ratio(logged.best, hello) ?? "n/a"} of hello-world`,
    );
  console.log(`   catalog / hello-world: ${summary.catalogOverHelloWorld ?? "n/a"} (target ≥ 0.6)`);
  if (roundStats) {
    for (const [i, r] of roundStats.rounds.entries())
      console.log(
        `   round ${i + 1}: hello-world ${r.hello?.best?.achieved ?? "n/a"}, catalog ${r.catalog?.best?.achieved ?? "n/a"} → catalog/hello ${r.ratio ?? "n/a"}`,
      );
    if (roundStats.sorted.length)
      console.log(
        `   catalog / hello-world over ${roundStats.rounds.length} rounds: median ${roundStats.median ?? "n/a"} (lower median), range ${roundStats.sorted[0]}–${roundStats.sorted[roundStats.sorted.length - 1]}`,
      );
  }
  console.log(
    `   cache hit ratio: ${pct(summary.hitRatioAtBest)} at the best step, ${pct(summary.hitRatioOverRun)} over the run (target ≥ 95%)`,
  );
  if (run)
    console.log(
      `   D1 queries: ${run.d1Queries} (catalog ${run.d1CatalogQueries}) for ${run.reads} reads → ${run.d1PerThousandReads.toFixed(3)} per 1,000 reads (target ≤ 1)`,
    );
  console.log(`   results: ${writeResults("catalog", results, { date: new Date(results.date) })}`);
}

const t0 = performance.now();
console.log(
  `bench/catalog — ${PATH_DESCRIPTION}; ${os.cpus().length} cores; load average ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(" ")}`,
);
const stateDir = mkdtempSync(path.join(os.tmpdir(), "bw-catalog-"));
try {
  if (!SKIP.has("ceiling")) await generatorCeiling();
  // Same URL shapes as the catalog run (the hello-world Worker ignores them), so requests are the same size.
  const fakeIds = Array.from({ length: EVENTS }, (_, i) => `evt_${String(i).padStart(20, "0")}`);
  const ids = SKIP.has("catalog") ? undefined : await seedCatalog(stateDir);
  const rounds: NonNullable<typeof results.rounds> = [];
  for (let round = 1; round <= REPEAT; round++) {
    if (REPEAT > 1) console.log(`\n== round ${round} of ${REPEAT}`);
    if (!SKIP.has("hello")) await helloWorld(fakeIds);
    // Rounds after the first leave out the hot-event step and the logged run.
    if (ids) await catalog(stateDir, ids, round === 1);
    const { hello, catalog: cat } = results.scenarios;
    rounds.push({
      ...(hello ? { hello } : {}),
      ...(cat ? { catalog: cat } : {}),
      ratio: ratio(cat?.best, hello?.best),
    });
  }
  // The scenarios (and the summary's max-sustained lines) stay round 1's; `rounds` holds every round.
  const [firstRound] = rounds;
  if (firstRound?.hello) results.scenarios.hello = firstRound.hello;
  if (firstRound?.catalog) results.scenarios.catalog = firstRound.catalog;
  if (REPEAT > 1) results.rounds = rounds;
  report();
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
console.log(`   took ${((performance.now() - t0) / 1000).toFixed(0)} s`);

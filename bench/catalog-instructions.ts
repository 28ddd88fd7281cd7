/**
 * bench/catalog-instructions: what one catalog read costs the server in machine instructions — Breakwater,
 * the answer floor and hello-world, on the same path and the same mix as bench/catalog — counted by
 * valgrind's callgrind inside the workerd process.
 *
 * Why: bench/catalog's throughput figures move by tens of percent from run to run on a shared 2-core VM
 * (other tenants, where V8's collections fall). An instruction count does not depend on what else the
 * machine does; it moves only with the code, the JIT's and collector's timing (±5 % here) and the inputs.
 * It counts user-space instructions of every workerd thread (the JIT compilers and the collector
 * included), not the kernel's socket work, which is about the same per request for all three servers. It
 * is a cost, not a speed: instructions of different kinds take different times (a cache miss is not an
 * add), so the ratio of two counts is not the ratio of two throughputs, but a change that saves
 * instructions on every request shows here at once and for certain.
 *
 * How: each server is started like `npm run serve` (scripts/serve.ts `startServer`, workerd through
 * miniflare with `unsafeDirectSockets`) with `MINIFLARE_WORKERD_PATH` pointing at a wrapper that runs
 * workerd under `valgrind --tool=callgrind` (about 50× slower). The bench sends WARM requests of the mix
 * (closed loop, CONCURRENCY at a time), zeroes the counters (`callgrind_control -z`), sends REQUESTS
 * more, dumps the counters (`callgrind_control -d`) and divides; ROUNDS times per server. The events are
 * created, and Breakwater's answers captured for the floor, in a normal server first.
 *
 * Env: SERVERS (hello-world,answer-floor,breakwater: which to measure), EVENTS (200), ZIPF_S (1.05),
 * LIST_SHARE (0.05), WARM (3000), REQUESTS (20000), ROUNDS (3),
 * CONCURRENCY (8), PORT (8803). Needs valgrind (`apt-get install valgrind`). Writes
 * bench/results/catalog-instructions-<date>.json.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  type Baseline,
  CACHE_LAYERS,
  type CacheLayerName,
  cacheLookups,
  seedEvents,
  startBaseline,
  startBreakwater,
} from "./lib/breakwater-process.ts";
import { captureAnswers, catalogPaths, catalogUrls, checkFloorAnswer } from "./lib/catalog-mix.ts";
import { envInt, envNames, envNumber } from "./lib/options.ts";
import { codeVersion, writeResults } from "./lib/results.ts";
import { workerdWrapper } from "./lib/workerd-wrapper.ts";

const EVENTS = envInt("EVENTS", 200, 1, 5000);
const MIX = { zipfS: envNumber("ZIPF_S", 1.05, 0, 3), listShare: envNumber("LIST_SHARE", 0.05, 0, 1) };
const WARM = envInt("WARM", 3000, 0, 100_000);
const REQUESTS = envInt("REQUESTS", 20_000, 100, 1_000_000);
const ROUNDS = envInt("ROUNDS", 3, 1, 10);
const CONCURRENCY = envInt("CONCURRENCY", 8, 1, 64);
const PORT = envInt("PORT", 8803, 1024, 65_000);
const SERVER_NAMES = ["hello-world", "answer-floor", "breakwater"] as const;
/** Which servers to measure (default all three); e.g. `SERVERS=breakwater` to compare two versions of the product code. */
const SERVERS = new Set(envNames("SERVERS", SERVER_NAMES, SERVER_NAMES));
/** A server under callgrind takes ~10× longer to start. */
const READY_WITHIN_MS = 300_000;

try {
  execFileSync("valgrind", ["--version"], { stdio: "ignore" });
} catch {
  console.error("bench/catalog-instructions needs valgrind (apt-get install valgrind)");
  process.exit(2);
}

const work = mkdtempSync(path.join(os.tmpdir(), "bw-instructions-"));

/** The environment that runs a server's workerd under callgrind, its counters written to `<work>/<name>.<pid>`. */
function underCallgrind(name: string): Record<string, string> {
  const out = JSON.stringify(path.join(work, `${name}.%p`));
  const log = JSON.stringify(path.join(work, `${name}.valgrind.log`));
  const wrapper = workerdWrapper(
    path.join(work, `${name}.workerd.sh`),
    (bin) => `valgrind --tool=callgrind --smc-check=all-non-file --dump-instr=no --callgrind-out-file=${out} ${bin} "$@" 2>>${log}`,
  );
  return { MINIFLARE_WORKERD_PATH: wrapper };
}

/** The pid of the live workerd that callgrind runs for `name` (Breakwater's server starts workerd twice; the last one serves). */
function callgrindPid(name: string): number {
  const pids = readdirSync(work)
    .map((f) => new RegExp(`^${name}\\.(\\d+)$`).exec(f)?.[1])
    .filter((p): p is string => p !== undefined)
    .map(Number)
    .filter((pid) => existsSync(`/proc/${pid}`));
  const pid = pids.sort((a, b) => a - b).at(-1);
  if (pid === undefined) throw new Error(`no running callgrind for ${name}`);
  return pid;
}

/** Sends requests `from`…`from + n - 1` of the mix, CONCURRENCY at a time, each body read to the end. */
async function send(url: (i: number) => string, from: number, n: number): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < from + n) {
        const res = await fetch(url(next++));
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`${res.url} answered ${res.status}`);
      }
    }),
  );
}

/** Instructions per request of the server `name` serving at `base`: ROUNDS windows of REQUESTS after WARM. */
async function measure(name: string, base: string, ids: string[], check?: (p: string, res: Response, body: string) => void) {
  for (const p of catalogPaths(ids)) {
    const res = await fetch(`${base}${p}`);
    const body = await res.text();
    check?.(p, res, body);
  }
  const url = catalogUrls(base, ids, MIX);
  let sent = 0;
  await send(url, sent, WARM);
  sent += WARM;
  const pid = callgrindPid(name);
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    execFileSync("callgrind_control", ["-z", String(pid)], { stdio: "ignore" });
    const before = new Set(readdirSync(work));
    await send(url, sent, REQUESTS);
    sent += REQUESTS;
    execFileSync("callgrind_control", ["-d", String(pid)], { stdio: "ignore" });
    const dump = readdirSync(work).find((f) => !before.has(f) && f.startsWith(`${name}.${pid}.`));
    if (!dump) throw new Error(`callgrind wrote no dump for ${name}`);
    const total = /^(?:summary|totals): (\d+)/m.exec(readFileSync(path.join(work, dump), "utf8"))?.[1];
    if (!total) throw new Error(`no instruction total in ${dump}`);
    rounds.push(Math.round(Number(total) / REQUESTS));
    console.log(`  ${name} round ${r + 1}: ${rounds.at(-1)?.toLocaleString("en")} instructions per request`);
  }
  const sorted = [...rounds].sort((a, b) => a - b);
  return { rounds, median: sorted[Math.floor((sorted.length - 1) / 2)] as number };
}

const results: Record<string, { rounds: number[]; median: number }> = {};
/**
 * Breakwater's reads by the layer that answered. Under callgrind the server runs tens of times slower, so the
 * 1 s lifetimes of the micro-cache and the version manifest lapse far more often per request than at full
 * speed: many reads are `validated`, and some of those go through the router to refresh the manifest.
 * How many depends on the machine's speed, so the count is recorded with the instructions.
 */
let breakwaterLayers: Record<CacheLayerName, number> | undefined;
try {
  console.log(`[1] ${EVENTS} events created through the public API; Breakwater's answers captured for the floor`);
  const stateDir = path.join(work, "state");
  const seeder = await startBreakwater(PORT, { STATE_DIR: stateDir, CRON: "off" }, 16);
  let ids: string[];
  let captured: Awaited<ReturnType<typeof captureAnswers>>;
  try {
    ids = await seedEvents(seeder, EVENTS);
    captured = await captureAnswers(seeder, ids, work);
  } finally {
    await seeder.stop();
  }

  for (const baseline of (["hello-world", "answer-floor"] satisfies Baseline[]).filter((b) => SERVERS.has(b))) {
    console.log(`[${baseline === "hello-world" ? 2 : 3}] ${baseline} under callgrind`);
    const env = { ...underCallgrind(baseline), ...(baseline === "answer-floor" ? { FLOOR_DOCUMENTS: captured.file } : {}) };
    const server = await startBaseline(baseline, PORT + 1, env, READY_WITHIN_MS);
    try {
      const check =
        baseline === "answer-floor"
          ? (p: string, res: Response, body: string) => checkFloorAnswer(captured.answers, p, res, body)
          : undefined;
      results[baseline] = await measure(baseline, server.url, ids, check);
    } finally {
      await server.stop();
    }
  }

  if (SERVERS.has("breakwater")) {
    console.log("[4] Breakwater catalog reads (REQUEST_LOG=off, CRON=off) under callgrind");
    const bw = await startBreakwater(PORT, { STATE_DIR: stateDir, CRON: "off", ...underCallgrind("breakwater") }, 16, READY_WITHIN_MS);
    try {
      const admin = await bw.token("bench-admin", "admin");
      const before = (await cacheLookups(bw, admin)).lookups;
      results.breakwater = await measure("breakwater", bw.base, ids);
      const after = (await cacheLookups(bw, admin)).lookups;
      const layers = Object.fromEntries(CACHE_LAYERS.map((l) => [l, after[l] - before[l]])) as Record<CacheLayerName, number>;
      breakwaterLayers = layers;
      const reads = CACHE_LAYERS.reduce((n, l) => n + layers[l], 0);
      console.log(
        `  reads by the layer that answered (warm-up and windows): ${CACHE_LAYERS.map((l) => `${l} ${layers[l]}`).join(", ")}; micro-cache hits without validation ${((layers.micro / Math.max(1, reads)) * 100).toFixed(1)} %`,
      );
    } finally {
      await bw.stop();
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const hello = results["hello-world"]?.median ?? Number.NaN;
const floor = results["answer-floor"]?.median ?? Number.NaN;
const catalog = results.breakwater?.median ?? Number.NaN;
const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? Math.round((a / b) * 1000) / 1000 : null);
const summary = {
  "hello-world / catalog": ratio(hello, catalog),
  "hello-world / floor": ratio(hello, floor),
  "floor / catalog": ratio(floor, catalog),
};
console.log(
  `\ninstructions per request (median of ${ROUNDS} × ${REQUESTS}): hello-world ${hello.toLocaleString("en")}, answer floor ${floor.toLocaleString("en")}, catalog ${catalog.toLocaleString("en")}`,
);
console.log(
  `cost ratios (the cheaper over the dearer): hello-world / catalog ${summary["hello-world / catalog"]}, hello-world / floor ${summary["hello-world / floor"]}, floor / catalog ${summary["floor / catalog"]}`,
);
const file = writeResults("catalog-instructions", {
  date: new Date().toISOString(),
  code: codeVersion(),
  machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? "unknown", node: process.version },
  path: "HTTP/1.1 keep-alive over loopback → workerd (under valgrind --tool=callgrind) via miniflare, unsafeDirectSockets, no dev proxy",
  settings: { EVENTS, ...MIX, WARM, REQUESTS, ROUNDS, CONCURRENCY },
  instructionsPerRequest: results,
  ...(breakwaterLayers ? { breakwaterReadsByLayer: breakwaterLayers } : {}),
  summary,
});
console.log(`results: ${file}`);

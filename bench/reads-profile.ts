/**
 * bench/reads-profile: what one request costs the server beyond CPU — how much the Worker isolate's heap
 * grows per request and how often a collection frees more than 5 MB at once — for the hello-world Worker, a catalog read
 * answered from the micro-cache (the router-free path), and `/healthz` (through the Hono router).
 *
 * Why: the strict rule of bench/catalog (p99 ≤ 50 ms per 4 s step) fails whenever a major collection stops
 * workerd's thread inside a step, so the number of collections per request decides it more than CPU does.
 *
 * Path: as bench/catalog (HTTP/1.1 keep-alive over loopback → workerd via miniflare, unsafeDirectSockets),
 * both servers with workerd's V8 inspector open (`INSPECTOR_PORT`), which the heap is sampled through every
 * 100 ms (`Runtime.getHeapUsage`); the inspector adds some CPU to both. Breakwater runs with CRON=off and
 * REQUEST_LOG=off. Each target gets the same open-model load (bench/lib/loadgen.ts) at RATE for DURATION.
 *
 * Each target's collections are also read from V8's own GC log (bench/lib/gc-trace.ts: `--trace-gc` through
 * a line-buffered workerd wrapper): scavenges, mark-compacts, their pauses, the pauses over 50 ms, and
 * the wrapper handles each mark-compact frees. Those handles are why the pauses grow: workerd destroys the
 * C++ objects (Request, Response, Headers and their header strings) of every request answered since the
 * last mark-compact inside that pause.
 *
 * Then, per target, a second run (SURVIVOR_DURATION) under V8's sampling heap profiler, keeping only the
 * objects that outlived the young generation (bench/lib/inspector.ts `sampleSurvivors`): how many bytes per
 * request wait for a mark-compact, how many of them the runtime allocated (the wrappers of its Request,
 * Response and Headers objects) and which of the Worker's functions allocated the rest.
 *
 * Env: RATE (2000), DURATION (20 s), SURVIVOR_DURATION (10 s), PORT (8795; hello-world PORT + 1; inspectors
 * PORT + 2, PORT + 3).
 * Writes bench/results/reads-profile-<date>.json.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { BASELINE_SCRIPT, seedEvents, startBaseline, startBreakwater } from "./lib/breakwater-process.ts";
import { type GcSummary, type GcTrace, gcTrace } from "./lib/gc-trace.ts";
import { connectInspector, type HeapTrace, type Survivors, sampleSurvivors, traceHeap } from "./lib/inspector.ts";
import { runLoad } from "./lib/loadgen.ts";
import { envInt, envNumber } from "./lib/options.ts";
import { cpuSeconds, workerdOf } from "./lib/proc-cpu.ts";
import { runInfo, writeResults } from "./lib/results.ts";

const RATE = envNumber("RATE", 2_000, 1, 100_000);
const DURATION = envNumber("DURATION", 20, 1, 600);
const SURVIVOR_DURATION = envNumber("SURVIVOR_DURATION", 10, 1, 120);
const PORT = envInt("PORT", 8795, 1_024, 65_532);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One target's figures. */
interface Row {
  target: string;
  url: string;
  achieved: number;
  p99Ms: number;
  maxMs: number;
  serverCpuUsPerRequest: number | null;
  heapGrowthBytesPerRequest: number;
  largeDrops: number;
  heapMinMB: number;
  heapMaxMB: number;
  /** V8's GC log over the measured run (absent without stdbuf). */
  gc?: GcSummary & { requests: number };
  /** A second run (SURVIVOR_DURATION at RATE, to the next scavenge) under V8's sampling heap profiler: what outlived the young generation. */
  survivors: Survivors;
}

async function profile(target: string, url: string, inspectorPort: number, pid: number | undefined, gc: GcTrace | undefined): Promise<Row> {
  // A short warm-up (JIT, caches), then the measured run with the heap sampled alongside.
  await runLoad({ url: () => url, rate: RATE, durationSec: 2 });
  const session = await connectInspector(inspectorPort);
  try {
    const cpu0 = pid === undefined ? undefined : cpuSeconds(pid);
    const gc0 = gc?.mark();
    const load = runLoad({ url: () => url, rate: RATE, durationSec: DURATION });
    const heap: HeapTrace = await traceHeap(session, load);
    const r = await load;
    const cpu1 = pid === undefined ? undefined : cpuSeconds(pid);
    // The wrapper writes line by line; a collection that ended with the run has its line a moment later.
    await sleep(200);
    const collections = gc && gc0 !== undefined ? { ...gc.summarize(gc0, gc.mark()), requests: r.sent } : undefined;
    // Separate from the measured run: the sampling profiler costs CPU of its own.
    const survivors = await sampleSurvivors(session, () => survivorRun(url, gc));
    const row: Row = {
      target,
      url,
      achieved: Math.round(r.throughput),
      p99Ms: r.latency.p99,
      maxMs: r.latency.max,
      serverCpuUsPerRequest: cpu0 === undefined || cpu1 === undefined ? null : Math.round(((cpu1 - cpu0) * 1e6) / r.sent),
      heapGrowthBytesPerRequest: Math.round(heap.grownBytes / r.sent),
      largeDrops: heap.largeDrops,
      heapMinMB: Math.round(heap.minBytes / 1e5) / 10,
      heapMaxMB: Math.round(heap.maxBytes / 1e5) / 10,
      ...(collections ? { gc: collections } : {}),
      survivors,
    };
    console.log(
      `  ${target.padEnd(34)} ${row.achieved}/s  p99 ${row.p99Ms} ms  max ${row.maxMs} ms  server ${row.serverCpuUsPerRequest ?? "?"} µs CPU/req  heap +${row.heapGrowthBytesPerRequest} B/req  ${row.largeDrops} drops > 5 MB in ${DURATION} s (heap ${row.heapMinMB}–${row.heapMaxMB} MB)`,
    );
    if (collections) {
      const c = collections;
      console.log(
        `  ${"".padEnd(34)} GC: ${c.scavenges} scavenges, ${c.markCompacts} mark-compacts (${c.handlesDied} handles freed, ${c.markCompacts ? Math.round(c.handlesDied / c.markCompacts) : 0} each), pauses ${c.pauseMs} ms in all, max ${c.maxPauseMs} ms, ${c.over50Ms} over 50 ms`,
      );
    }
    console.log(
      `  ${"".padEnd(34)} outlived the young generation: ${survivors.bytesPerRequest} B/req, of which the runtime's ${survivors.runtimeBytesPerRequest}; the Worker's: ${survivors.top.map((t) => `${t.fn} ${t.bytesPerRequest}`).join(", ") || "none"}`,
    );
    return row;
  } finally {
    session.close();
  }
}

/**
 * The load of {@link sampleSurvivors}: SURVIVOR_DURATION at RATE, then on until the GC log shows the next
 * scavenge (at most 10 s more), so sampling stops with the young generation just emptied. Without a GC
 * log it stops at once, and the figures then include up to a young generation of garbage.
 */
async function survivorRun(url: string, gc: GcTrace | undefined): Promise<{ requests: number; after: Promise<unknown> }> {
  let answered = 0;
  let ended = false;
  const after = runLoad({
    url: () => url,
    rate: RATE,
    durationSec: SURVIVOR_DURATION + 10,
    onStatus: () => {
      answered++;
    },
  }).finally(() => {
    ended = true;
  });
  await sleep(SURVIVOR_DURATION * 1000);
  if (gc) {
    const from = gc.mark();
    while (!ended && gc.summarize(from, gc.mark()).scavenges === 0) await sleep(5);
  }
  return { requests: answered, after };
}

console.log(`bench/reads-profile — ${RATE} req/s for ${DURATION} s per target; inspector open on both servers`);
const rows: Row[] = [];
const gcDir = mkdtempSync(path.join(os.tmpdir(), "bw-gc-"));
/** Sets the environment the next server starts with (the children inherit it). */
const useEnv = (env: Record<string, string>) => Object.assign(process.env, env);
process.env.INSPECTOR_PORT = String(PORT + 3);
const helloGc = gcTrace(gcDir, "hello-world");
if (!helloGc) console.log("  (stdbuf not found: no GC log)");
useEnv(helloGc?.env ?? {});
const hello = await startBaseline("hello-world", PORT + 1);
try {
  rows.push(
    await profile(
      "hello-world",
      `${hello.url}/v1/events/evt_0000000000000000000a`,
      PORT + 3,
      workerdOf(BASELINE_SCRIPT, PORT + 1),
      helloGc,
    ),
  );
} finally {
  await hello.stop();
}
process.env.INSPECTOR_PORT = String(PORT + 2);
const bwGc = gcTrace(gcDir, "breakwater");
useEnv(bwGc?.env ?? {});
const bw = await startBreakwater(PORT, { CRON: "off", REQUEST_LOG: "off" }, 16);
try {
  const [id] = await seedEvents(bw, 1);
  const pid = workerdOf("scripts/serve.ts", PORT);
  rows.push(await profile("catalog hit (router-free path)", `${bw.base}/v1/events/${id}`, PORT + 2, pid, bwGc));
  rows.push(await profile("/healthz (through the router)", `${bw.base}/healthz`, PORT + 2, pid, bwGc));
} finally {
  await bw.stop();
  rmSync(gcDir, { recursive: true, force: true });
}
const file = writeResults("reads-profile", {
  ...runInfo(),
  rate: RATE,
  durationSec: DURATION,
  rows,
});
console.log(`   results: ${file}`);

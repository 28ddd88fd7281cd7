/**
 * bench/stalls: where the answers of a fixed-rate catalog read load stall, against the collections V8
 * logged for the same isolate. bench/catalog's strict rule (p99 ≤ 50 ms over a step) fails a step on a few
 * hundred late answers; this bench puts every stretch of late answers on a timeline beside the collections,
 * so a reader can see which of them a collection explains and which it does not.
 *
 * Path: as bench/catalog (HTTP/1.1 keep-alive over loopback → workerd via miniflare, `unsafeDirectSockets`,
 * no dev proxy), one server at a time: Breakwater (`REQUEST_LOG=off`, `CRON=off`, EVENTS events seeded in a
 * server of their own) and the hello-world Worker, the same Zipf mix of URLs at RATE req/s for DURATION s
 * after bench/catalog's warm-up (every path once, then 2 s of the mix).
 *
 * A stall is a run of answers later than STALL_MS (by scheduled send time, so it starts at the first late
 * request and ends when the last of them is answered). V8 logs a collection when it ends, in milliseconds
 * since its isolate started; the load generator's clock is another one. The two are aligned by the offset
 * that lines up the most stalls with the start of a collection (end minus pause) within ALIGN_MS; a stall is
 * explained when a collection starts inside it (or ALIGN_MS before it) under that offset.
 *
 * It also prints the isolate's mark-compact cycle over the run, from the same log: how often a mark-compact
 * came and why, the old generation it left, how much the global measure (JavaScript heap plus workerd's
 * memory, which V8's global limit counts) grew between two, and the bytes allocated per request.
 *
 * Env: TARGETS (catalog,hello-world; also hello-world-with-app, hello-world's answer in an isolate that has
 * loaded Breakwater's modules: bench/hello-world-with-app/worker.ts), RATE (1000), DURATION (30 s), STALL_MS (20), ALIGN_MS (30),
 * EVENTS (1000), PORT (8830; hello-world PORT + 1).
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { seedEvents, startBaseline, startBreakwater } from "./lib/breakwater-process.ts";
import { catalogUrls, warmUp } from "./lib/catalog-mix.ts";
import { cyclesOf, type GcCycles, type GcEvent, gcTrace } from "./lib/gc-trace.ts";
import { runLoad } from "./lib/loadgen.ts";
import { envInt, envNames, envNumber } from "./lib/options.ts";
import { runInfo, writeResults } from "./lib/results.ts";

const TARGETS = envNames("TARGETS", ["catalog", "hello-world", "hello-world-with-app"], ["catalog", "hello-world"]);
const RATE = envNumber("RATE", 1_000, 10, 20_000);
const DURATION = envNumber("DURATION", 30, 1, 300);
const STALL_MS = envNumber("STALL_MS", 20, 1, 10_000);
const ALIGN_MS = envNumber("ALIGN_MS", 30, 1, 1_000);
const EVENTS = envInt("EVENTS", 1_000, 1, 20_000);
const PORT = envInt("PORT", 8830, 1_024, 65_533);
const MIX = { zipfS: 1.05, listShare: 0.05 };

/** A run of late answers: from the first late request's scheduled send to the last one's answer (ms from the run's start). */
interface Stall {
  startMs: number;
  endMs: number;
  maxLatencyMs: number;
  late: number;
}

/** Runs of answers later than `threshold`, from (scheduled send, latency) pairs in any order. */
function stallsOf(answers: { at: number; latency: number }[], threshold: number): Stall[] {
  const late = answers.filter((a) => a.latency > threshold).sort((a, b) => a.at - b.at);
  const stalls: Stall[] = [];
  for (const a of late) {
    const last = stalls.at(-1);
    if (last && a.at <= last.endMs) {
      last.endMs = Math.max(last.endMs, a.at + a.latency);
      last.maxLatencyMs = Math.max(last.maxLatencyMs, a.latency);
      last.late++;
    } else stalls.push({ startMs: a.at, endMs: a.at + a.latency, maxLatencyMs: a.latency, late: 1 });
  }
  return stalls;
}

/** Whether a collection starting at `gcStart` (load-generator clock) falls in `s`, or up to `slack` before it. */
const inside = (s: Stall, gcStart: number, slack: number) => gcStart >= s.startMs - slack && gcStart <= s.endMs;

/**
 * The offset (isolate clock − load-generator clock) that puts the start of a collection in the most
 * stalls; every pairing of a stall with a collection is a candidate.
 */
function align(stalls: Stall[], gcs: GcEvent[], slack: number): number | undefined {
  let best: { offset: number; matched: number } | undefined;
  for (const s of stalls)
    for (const g of gcs) {
      const offset = g.atMs - g.pauseMs - s.startMs;
      const matched = stalls.filter((x) => gcs.some((h) => inside(x, h.atMs - h.pauseMs - offset, slack))).length;
      if (!best || matched > best.matched) best = { offset, matched };
    }
  return best?.offset;
}

const mb = (bytes: number | undefined) => (bytes === undefined ? "n/a" : `${(bytes / 2 ** 20).toFixed(1)} MB`);

/** One line on the isolate's mark-compact cycle over the run. */
function formatCycles(c: GcCycles, allocatedPerRequestBytes: number | undefined): string {
  const every = c.intervalMs === undefined ? "fewer than two mark-compacts" : `a mark-compact every ${(c.intervalMs / 1000).toFixed(1)} s`;
  const perRequest = allocatedPerRequestBytes === undefined ? "n/a" : `${(allocatedPerRequestBytes / 1024).toFixed(2)} KB`;
  return (
    `${every} (${c.reasons.join(", ") || "none"}); old generation after one ${mb(c.oldGenAfterBytes)}, ` +
    `global growth between two ${mb(c.headroomBytes)}; allocated ${perRequest} per request`
  );
}

const dir = mkdtempSync(path.join(os.tmpdir(), "bw-stalls-"));
const stateDir = path.join(dir, "state");
const rows: unknown[] = [];
try {
  let ids: string[] = [];
  if (TARGETS.includes("catalog")) {
    const seeder = await startBreakwater(PORT, { STATE_DIR: stateDir, CRON: "off" }, 16);
    try {
      ids = await seedEvents(seeder, EVENTS);
    } finally {
      await seeder.stop();
    }
  } else ids = Array.from({ length: EVENTS }, (_, i) => `evt_${String(i).padStart(20, "0")}`);

  for (const target of TARGETS) {
    const gc = gcTrace(dir, target);
    if (!gc) throw new Error("bench/stalls needs stdbuf (coreutils) for V8's GC log");
    const server =
      target === "catalog"
        ? await startBreakwater(PORT, { STATE_DIR: stateDir, REQUEST_LOG: "off", CRON: "off", ...gc.env }, 16).then((bw) => ({
            base: bw.base,
            stop: () => bw.stop(),
          }))
        : await startBaseline(target, PORT + 1, gc.env).then((b) => ({ base: b.url, stop: b.stop }));
    try {
      const url = catalogUrls(server.base, ids, MIX);
      await warmUp(server.base, ids, url, { start: RATE });
      const from = gc.mark();
      const answers: { at: number; latency: number }[] = [];
      let t0: number | undefined;
      const r = await runLoad({
        url,
        rate: RATE,
        durationSec: DURATION,
        onLatency: (_i, at, latency) => {
          t0 ??= at;
          answers.push({ at: at - t0, latency });
        },
      });
      const gcs = gc.events(from, gc.mark());
      const stalls = stallsOf(answers, STALL_MS);
      const offset = align(stalls, gcs, ALIGN_MS);
      const timeline = stalls.map((s) => {
        const during = offset === undefined ? [] : gcs.filter((g) => inside(s, g.atMs - g.pauseMs - offset, ALIGN_MS));
        return {
          startMs: Math.round(s.startMs),
          lastAnsweredMs: Math.round(s.endMs),
          maxLatencyMs: Math.round(s.maxLatencyMs),
          late: s.late,
          collections: during.map((g) => `${g.kind} ${g.pauseMs.toFixed(1)} ms`),
        };
      });
      const explained = timeline.filter((s) => s.collections.length > 0);
      const cycles = cyclesOf(gcs);
      const allocatedPerRequestBytes = cycles.allocatedPerSecond === undefined ? undefined : Math.round(cycles.allocatedPerSecond / RATE);
      const row = {
        target,
        rate: RATE,
        durationSec: DURATION,
        p99Ms: r.p99,
        maxMs: r.max,
        errors: r.errors.total,
        collections: {
          scavenges: gcs.filter((g) => g.kind === "scavenge").length,
          markCompacts: gcs.filter((g) => g.kind === "mark-compact").length,
          pausesMs: gcs.map((g) => Math.round(g.pauseMs * 10) / 10),
          cycles,
          allocatedPerRequestBytes,
          events: gcs,
        },
        stalls: timeline.length,
        explained: explained.length,
        lateAnswers: timeline.reduce((n, s) => n + s.late, 0),
        lateAnswersInExplained: explained.reduce((n, s) => n + s.late, 0),
        timeline,
      };
      rows.push(row);
      console.log(
        `\n${target} at ${RATE} req/s for ${DURATION} s: p99 ${r.p99.toFixed(1)} ms, max ${r.max.toFixed(1)} ms, ${r.errors.total} errors; ` +
          `${row.collections.scavenges} scavenges, ${row.collections.markCompacts} mark-compacts`,
      );
      console.log(
        `  ${row.stalls} stalls (answers later than ${STALL_MS} ms), ${row.explained} with a collection in them; ` +
          `${row.lateAnswersInExplained} of ${row.lateAnswers} late answers in those`,
      );
      console.log(`  ${formatCycles(cycles, allocatedPerRequestBytes)}`);
      for (const s of timeline)
        console.log(
          `  ${String(s.startMs).padStart(6)} ms  max ${String(s.maxLatencyMs).padStart(4)} ms  ${String(s.late).padStart(4)} late  ${s.collections.join(", ") || "no collection"}`,
        );
    } finally {
      await server.stop();
    }
  }
  const file = writeResults("stalls", {
    ...runInfo(),
    path: "HTTP/1.1 keep-alive over loopback → workerd via miniflare, unsafeDirectSockets, no dev proxy",
    settings: { RATE, DURATION, STALL_MS, ALIGN_MS, EVENTS, mix: MIX },
    rows,
  });
  console.log(`\nresults: ${file}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * V8's own record of every garbage collection in a workerd server: the pause of each scavenge and
 * mark-compact, and how many wrapper handles (Request, Response, Headers…) died in it.
 *
 * How: the server is started with `MINIFLARE_WORKERD_V8_FLAGS="--trace-gc --trace-gc-nvp"` (miniflare
 * passes them to workerd) and `MINIFLARE_WORKERD_PATH` pointing at a wrapper script that runs the real
 * workerd binary line-buffered (`stdbuf -oL`) with its stdout appended to a file: miniflare drops stdout
 * lines that are not its JSON logs, and a fully buffered pipe would hold the last seconds back. The
 * wrapper changes nothing else. Needs `stdbuf` (coreutils); {@link gcTrace} returns undefined without it.
 */
import { execFileSync } from "node:child_process";
import { closeSync, openSync, readSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { workerdWrapper } from "./workerd-wrapper.ts";

/** Collections of one isolate over a stretch of a run. */
export interface GcSummary {
  scavenges: number;
  markCompacts: number;
  /** Sum of all pauses (ms). */
  pauseMs: number;
  maxPauseMs: number;
  /** Collections that stopped the thread for more than 50 ms (the bench/catalog p99 bound). */
  over50Ms: number;
  /** Wrapper handles freed by the mark-compacts (their C++ objects are destroyed inside the pause). */
  handlesDied: number;
}

/** One server's GC log. */
export interface GcTrace {
  /** Environment to start the server with. */
  env: Record<string, string>;
  /** Where the log is, in bytes now (a mark to summarize from). */
  mark(): number;
  /** The collections of the busiest isolate (the one that allocated most) logged between two marks. */
  summarize(from: number, to: number): GcSummary;
  /** The same collections one by one, in the order logged. */
  events(from: number, to: number): GcEvent[];
}

/** One collection: when V8 logged it (at its end, in ms since the isolate started), its kind and its pause. */
export interface GcEvent {
  atMs: number;
  kind: "scavenge" | "mark-compact";
  pauseMs: number;
  /** Why V8 started it (`allocation failure`, `allocation limit`, `global allocation limit`, …). */
  reason: string;
  /** Bytes the isolate allocated since the previous collection. */
  allocatedBytes: number;
  /** The old generation after it (bytes). */
  oldGenAfterBytes: number;
  /** The JavaScript heap plus the embedder's memory (what V8's global limit counts), before and after it (bytes). */
  globalBeforeBytes: number;
  globalAfterBytes: number;
}

/** The mark-compact cycle of a stretch of collections: how often, why, and what each cycle grows. */
export interface GcCycles {
  markCompacts: number;
  /** Mean time from one mark-compact to the next (ms); undefined with fewer than two. */
  intervalMs: number | undefined;
  /** The reasons V8 gave for the mark-compacts, each once. */
  reasons: string[];
  /** The old generation the last mark-compact left (bytes): what the isolate keeps. */
  oldGenAfterBytes: number | undefined;
  /** Mean growth of the global measure from one mark-compact's end to the next one's start (bytes). */
  headroomBytes: number | undefined;
  /** Bytes allocated per second from the first collection to the last (undefined with fewer than two). */
  allocatedPerSecond: number | undefined;
}

const mean = (xs: number[]): number | undefined => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined);

/** The cycle of mark-compacts in `events` (collections of one isolate, in the order logged). */
export function cyclesOf(events: GcEvent[]): GcCycles {
  const mcs = events.filter((e) => e.kind === "mark-compact");
  const pairs = mcs.slice(1).map((next, i) => [mcs[i] as GcEvent, next] as const);
  const first = events[0];
  const last = events.at(-1);
  const spanSec = first && last ? (last.atMs - first.atMs) / 1000 : 0;
  return {
    markCompacts: mcs.length,
    intervalMs: mean(pairs.map(([a, b]) => b.atMs - a.atMs)),
    reasons: [...new Set(mcs.map((e) => e.reason))],
    oldGenAfterBytes: mcs.at(-1)?.oldGenAfterBytes,
    headroomBytes: mean(pairs.map(([a, b]) => b.globalBeforeBytes - a.globalAfterBytes)),
    // What the first collection reports was allocated before the stretch began.
    allocatedPerSecond: spanSec > 0 ? events.slice(1).reduce((n, e) => n + e.allocatedBytes, 0) / spanSec : undefined,
  };
}

const GC_LINE = /^\[\d+:(0x[0-9a-f]+):\d+\]\s+(\d+) ms: GC: (\{.*\})\s*$/;

/** A GC trace for a server started with the returned env, logging to `<dir>/<name>.gc.log`. */
export function gcTrace(dir: string, name: string): GcTrace | undefined {
  try {
    execFileSync("stdbuf", ["--version"], { stdio: "ignore" });
  } catch {
    return undefined;
  }
  const log = path.join(dir, `${name}.gc.log`);
  const wrapper = path.join(dir, `${name}.workerd.sh`);
  writeFileSync(log, "");
  workerdWrapper(wrapper, (bin) => `stdbuf -oL ${bin} "$@" >>${JSON.stringify(log)}`);
  return {
    env: { MINIFLARE_WORKERD_PATH: wrapper, MINIFLARE_WORKERD_V8_FLAGS: "--trace-gc --trace-gc-nvp" },
    mark: () => statSync(log).size,
    summarize: (from, to) => summarize(busiest(readRange(log, from, to))),
    events: (from, to) =>
      busiest(readRange(log, from, to)).map((r) => ({
        atMs: r.atMs,
        kind: r.gc === "mc" ? "mark-compact" : "scavenge",
        pauseMs: r.pause,
        reason: r.reason ?? "",
        allocatedBytes: r.allocated,
        oldGenAfterBytes: r.end_old_gen_consumed_size ?? 0,
        globalBeforeBytes: r.start_global_consumed_size ?? 0,
        globalAfterBytes: r.end_global_consumed_size ?? 0,
      })),
  };
}

function readRange(file: string, from: number, to: number): string {
  const buf = Buffer.alloc(Math.max(0, to - from));
  const fd = openSync(file, "r");
  try {
    readSync(fd, buf, 0, buf.length, from);
  } finally {
    closeSync(fd);
  }
  return buf.toString("utf8");
}

interface GcRecord {
  /** Set from the line's prefix. */
  atMs: number;
  gc: string;
  pause: number;
  allocated: number;
  nodes_died_in_new: number;
  reason?: string;
  end_old_gen_consumed_size?: number;
  start_global_consumed_size?: number;
  end_global_consumed_size?: number;
}

/** The records of the isolate that allocated most in `text`. */
function busiest(text: string): GcRecord[] {
  const byIsolate = new Map<string, GcRecord[]>();
  for (const line of text.split("\n")) {
    const m = GC_LINE.exec(line);
    if (!m) continue;
    let rec: GcRecord;
    try {
      rec = { ...(JSON.parse(m[3] as string) as Omit<GcRecord, "atMs">), atMs: Number(m[2]) };
    } catch {
      continue;
    }
    const list = byIsolate.get(m[1] as string) ?? [];
    list.push(rec);
    byIsolate.set(m[1] as string, list);
  }
  // The Worker's isolate is the one that allocates: miniflare's own (KV, cache, D1…) idle through a read load.
  let found: GcRecord[] = [];
  let most = -1;
  for (const list of byIsolate.values()) {
    const allocated = list.reduce((n, r) => n + r.allocated, 0);
    if (allocated > most) {
      most = allocated;
      found = list;
    }
  }
  return found;
}

function summarize(busiest: GcRecord[]): GcSummary {
  const s: GcSummary = { scavenges: 0, markCompacts: 0, pauseMs: 0, maxPauseMs: 0, over50Ms: 0, handlesDied: 0 };
  for (const r of busiest) {
    if (r.gc === "mc") {
      s.markCompacts++;
      s.handlesDied += r.nodes_died_in_new;
    } else s.scavenges++;
    s.pauseMs += r.pause;
    s.maxPauseMs = Math.max(s.maxPauseMs, r.pause);
    if (r.pause > 50) s.over50Ms++;
  }
  s.pauseMs = Math.round(s.pauseMs * 10) / 10;
  s.maxPauseMs = Math.round(s.maxPauseMs * 10) / 10;
  return s;
}

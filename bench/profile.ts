/**
 * bench/profile: where a hold and a checkout spend CPU, step by step (issue 20). Starts Breakwater the way
 * the other benches do (scripts/serve.ts: workerd through miniflare with unsafeDirectSockets) with
 * workerd's V8 inspector open, and for each phase records a V8 CPU profile of the Worker's isolate (the
 * edge and every Durable Object of the Worker run in it locally) and the workerd process's CPU from /proc:
 *
 * - `holds`: `HOLDS` holds of one place on a seated section (`CONCURRENCY` buyers in a closed loop);
 * - `checkouts`: `CHECKOUTS` holds on a GA section made first (not profiled), then their checkouts
 *   (`POST /v1/orders`, sandbox `tok_ok`) profiled.
 *
 * Every sample is given to one step by its stack (see STEPS and attribute()), and the table prints each
 * step's share of the profile and that share of workerd's CPU per operation (from /proc). The profile
 * clocks the thread's wall time, so on a loaded machine its total exceeds the CPU time; the shares stay
 * comparable. Queue consumers triggered by an operation are part of its cost: each phase's profile and CPU
 * run until workerd is quiet again (its rate is the answers'). Mail goes over HTTP to a local sink, as in
 * production (`MAIL`, bench/lib/mail-sink.ts). Rate limits run with limits too high to refuse (`RATE_LIMITS` below), so their Limiter
 * DO calls are on the path as in production; request logs are off (as in every bench).
 *
 * Env: HOLDS (2000), CHECKOUTS (1000), CONCURRENCY (32), PORT (8795; inspector PORT+1),
 * SAMPLING_US (200), PROFILE_DUMP (a path prefix: also write each phase's .cpuprofile), RATE_LIMITS (default: every route's limits at 1,000,000/s), MAIL (sink; mailbox: the local KV mailbox;
 * the sink listens on PORT+2), RESULTS_TAG.
 */
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startBreakwater } from "./lib/breakwater-process.ts";
import { benchMail, buyerId } from "./lib/mail-sink.ts";
import { envInt } from "./lib/options.ts";
import { cpuSeconds, workerdOf } from "./lib/proc-cpu.ts";
import { runInfo, writeResults } from "./lib/results.ts";

const HOLDS = envInt("HOLDS", 2_000, 10, 100_000);
const CHECKOUTS = envInt("CHECKOUTS", 1_000, 10, 100_000);
const C = envInt("CONCURRENCY", 32, 1, 512);
const PORT = envInt("PORT", 8795, 1_024, 65_000);
const INSPECTOR = PORT + 1;
const SAMPLING_US = envInt("SAMPLING_US", 200, 50, 10_000);
/** The most one sample counts for (a few sampling intervals). */
const MAX_SAMPLE_US = SAMPLING_US * 4;
const high = { limit: 1_000_000, periodSeconds: 1 };
const RATE_LIMITS =
  process.env.RATE_LIMITS ??
  JSON.stringify({ holds: { user: high, ip: high }, orders: { user: high, ip: high }, reads: { user: high, ip: high } });

// ───────────────────────────── CPU profile over the inspector ─────────────────────────────

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A Chrome DevTools Protocol session with the Worker's isolate. */
async function inspect(port: number): Promise<{ send: (method: string, params?: object) => Promise<unknown>; close: () => void }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/core:user:breakwater`);
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve);
    ws.addEventListener("error", reject);
  });
  let next = 1;
  const pending = new Map<number, (v: unknown) => void>();
  ws.addEventListener("message", (m) => {
    const msg = JSON.parse(String(m.data)) as { id?: number; result?: unknown; error?: unknown };
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.error ? Promise.reject(new Error(JSON.stringify(msg.error))) : msg.result);
  });
  return {
    send: (method, params = {}) =>
      new Promise((resolve) => {
        const id = next++;
        pending.set(id, resolve);
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

/**
 * The steps. A sample whose stack holds a queue consumer's entry is the consumers' (off the answer's path,
 * but each operation's cost). Otherwise it goes to the first step one of whose function names appears on
 * its stack, walking from the leaf to the root (innermost wins). Names are the bundle's (esbuild keeps
 * function and method names, sometimes with a digit appended, which is ignored). Self time of a frame that
 * calls a Durable Object (the stub call: argument serialization and dispatch happen inside it, with no
 * frame of their own) is its own step; native SQLite calls are split by the object that made them.
 */
const SQL_NATIVE = new Set(["exec", "toArray", "one", "raw", "next", "transactionSync", "columnNames", "rowsRead", "rowsWritten"]);
const CONSUMERS = new Set([
  "handleQueue",
  "consumeOrders",
  "consumeNotifications",
  "consumeAnalytics",
  "consumeDeadLetters",
  "storeOrder",
  "saveOrder",
  "logStored",
  "orderConfirmation",
  "deliverOrganizerEvent",
  "findOrganizerWebhook",
  // drizzle over D1: only the consumers write D1 on these paths (their stacks lose the consumer's frame after an await)
  "queryWithCache",
  "buildQueryFromSourceParams",
  "sqlToQuery",
  "buildInsertQuery",
  "buildSelection",
  "_prepare",
]);
const CONSUMERS_STEP = "queue consumers (orders → D1 shard, notifications, analytics)";
/** Scripts of the runtime whose frames belong to the consumers (D1). */
const CONSUMER_URLS = new Set(["cloudflare-internal:d1-api"]);
/** Functions whose own (self) time is mostly a Durable Object stub call (RPC serialization and dispatch). */
const RPC_CALLERS = new Set([
  "placeHold",
  "checkout",
  "recordPaidOrder",
  "doCall",
  "reopen",
  "idempotency",
  "settleLedger",
  "publish",
  "getHold",
  "releaseHold",
  "holdInShard",
  "reserveAndHold",
  "beginOrReplay",
]);
const STEPS: { step: string; names: string[] }[] = [
  {
    step: "logging and metrics",
    names: ["finish", "finishPrepared", "record", "inc", "observe", "series", "writeDataPoint", "info", "warn", "write"],
  },
  {
    step: "queue sends",
    names: ["sendAnalytics", "send", "sendBatch", "markOrdersSent", "handOrdersOff", "flushAnalytics"],
  },
  { step: "JWT (auth)", names: ["auth", "verifyToken", "verifyHs256", "verify"] },
  { step: "rate limit (edge + Limiter DO)", names: ["rateLimit", "check", "limiterStore", "withTimeout", "tat", "limiter"] },
  { step: "idempotency", names: ["idempotency", "beginIdempotent", "completeIdempotent", "abandonIdempotent"] },
  { step: "LimitLedger DO", names: ["reserve", "reserveMany", "reserveOne", "settleMany", "settleOne", "setState", "used", "ranWith"] },
  {
    step: "Inventory DO",
    names: [
      "hold",
      "beginCheckout",
      "lockForCheckout",
      "completeCheckout",
      "recordOrder",
      "moveHoldSeats",
      "expireRows",
      "abortCheckout",
      "settleLedger",
      "settleLedgerSoon",
      "noteLedger",
      "ensure",
      "expireDue",
      "pickSeats",
      "markDirty",
      "alarm",
      "publish",
      "flushOutbox",
      "rescheduleAlarm",
      "confirmStored",
      "place",
      "placeNow",
      "reserveAndHold",
      "mayHold",
      "holdOne",
      "releaseReservations",
      "holdNow",
      "insertHold",
      "noteExpiry",
      "keepEventVersion",
      "reportInventory",
      "announceSoldOut",
    ],
  },
  { step: "payment (sandbox)", names: ["chargeWithPolicy", "chargeOrReopen", "charge", "succeed", "run"] },
  { step: "tickets (signing)", names: ["issueTickets", "signTicket"] },
  { step: "validation (zod)", names: ["validate", "safeParse", "parse", "_parse"] },
  {
    step: "handler (placeHold / checkout)",
    names: [
      "placeHold",
      "holdQuantity",
      "shardCandidates",
      "holdInShards",
      "checkout",
      "settleCharge",
      "recordPaidOrder",
      "availabilitySnapshot",
      "getEventDoc",
    ],
  },
];
const stepOfName = new Map<string, string>();
for (const s of STEPS) for (const n of s.names) if (!stepOfName.has(n)) stepOfName.set(n, s.step);
const RPC_STEP = "DO calls: stub call, argument serialization (caller side)";
const bare = (name: string): string => name.replace(/\d+$/, "");
/** The profiled Worker's own frames (the bundle), as opposed to the runtime's scripts and native code. */
const ours = (f: CallFrame): boolean => f.url.endsWith("index.js");

/**
 * CPU µs per step of one profile (idle excluded). `isStubCall(frame)`: whether a frame named like a DO
 * method is in fact the caller's stub call (the rate limiter's `check` shares its name with the DO's).
 */
function attribute(p: Profile, isStubCall: (f: CallFrame) => boolean): Map<string, number> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const memo = new Map<number, string>();
  const stepOf = (id: number): string => {
    const cached = memo.get(id);
    if (cached) return cached;
    const leaf = (byId.get(id) as ProfileNode).callFrame;
    const special = leaf.functionName;
    let step: string | undefined;
    if (special === "(idle)") step = "(idle)";
    else if (special === "(garbage collector)") step = "garbage collection";
    else if (special === "(program)") step = "(program): runtime outside JS frames";
    else if (!leaf.url && (byId.get(parent.get(id) ?? -1) as ProfileNode | undefined)?.callFrame.functionName === "(root)")
      step = "runtime, native with no JS caller: HTTP and DO call dispatch, (de)serialization";
    else if (ours(leaf) && (RPC_CALLERS.has(bare(special)) || isStubCall(leaf))) step = RPC_STEP;
    for (let cur: number | undefined = id; step === undefined && cur !== undefined; cur = parent.get(cur))
      if (
        CONSUMERS.has(bare((byId.get(cur) as ProfileNode).callFrame.functionName)) ||
        CONSUMER_URLS.has((byId.get(cur) as ProfileNode).callFrame.url)
      )
        step = CONSUMERS_STEP;
    let sql = !leaf.url && SQL_NATIVE.has(special);
    const serialization = !leaf.url && (special === "parse" || special === "stringify");
    for (let cur: number | undefined = id; step === undefined && cur !== undefined; cur = parent.get(cur)) {
      const f = (byId.get(cur) as ProfileNode).callFrame;
      if (!f.url && SQL_NATIVE.has(f.functionName)) sql = true;
      const s = ours(f) ? (isStubCall(f) ? RPC_STEP : (moduleStep(f) ?? stepOfName.get(bare(f.functionName)))) : undefined;
      if (!s) continue;
      if (sql && (s === "Inventory DO" || s === "LimitLedger DO" || s === "idempotency" || s === "rate limit (edge + Limiter DO)"))
        step = `SQLite in ${s}`;
      else if (serialization) step = `JSON in ${s}`;
      else step = s;
    }
    if (step === undefined) step = sql ? "SQLite (other)" : "edge: Hono routing, other middleware, responses";
    memo.set(id, step);
    return step;
  };
  const out = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const s = stepOf(p.samples[i] as number);
    // A sample after a gap (the thread descheduled, the inspector busy) would take the whole gap to its step:
    // one sample once took a fifth of a phase. Each sample counts at most MAX_SAMPLE_US.
    out.set(s, (out.get(s) ?? 0) + Math.min(p.timeDeltas[i] ?? 0, MAX_SAMPLE_US));
  }
  return out;
}

/** The bundle's lines (to tell the rate limiter's stub call `check: (…) => ns.get(…).check(…)` from the DO's `check`). */
let bundleLines: string[] | undefined;
const lines = (): string[] =>
  (bundleLines ??= readFileSync(path.join(import.meta.dirname, "..", ".build", "worker", "index.js"), "utf8").split("\n"));
const isStubCall = (f: CallFrame): boolean => bare(f.functionName) === "check" && /ns\.get\(/.test(lines()[f.lineNumber] ?? "");

/**
 * Modules whose frames are one step whatever their function names: names repeat across modules (the
 * sandbox ledger's `record` and `write`, the mail sender's `send`, the log's `write`), and a consumer's
 * frames lose the consumer's entry after an await.
 */
const MODULE_STEPS: [RegExp, string][] = [
  [/^(queues\/|lib\/mail|lib\/order-store|lib\/organizer-webhooks|lib\/buyer-notices)/, CONSUMERS_STEP],
  [/^(lib\/payments\.ts|durable-objects\/sandbox-ledger\.ts)$/, "payment (sandbox)"],
  [/^(lib\/log\.ts|lib\/metrics\.ts|lib\/metric-catalog\.ts|lib\/otel\.ts)$/, "logging and metrics"],
];
/** The bundle's module markers (esbuild's `// <path>` line before each module's code), by line. */
let modules: { line: number; path: string }[] | undefined;
const moduleOf = (line: number): string | undefined => {
  modules ??= lines().flatMap((l, i) => {
    const m = /^\/\/ ((?:lib|queues|workers|durable-objects|node_modules)\/\S+\.[cm]?[jt]s)$/.exec(l);
    return m ? [{ line: i, path: m[1] as string }] : [];
  });
  let lo = 0;
  let hi = modules.length - 1;
  let found: string | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = modules[mid] as { line: number; path: string };
    if (m.line <= line) {
      found = m.path;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
};
const moduleStep = (f: CallFrame): string | undefined => {
  const mod = moduleOf(f.lineNumber);
  return mod === undefined ? undefined : MODULE_STEPS.find(([re]) => re.test(mod))?.[1];
};

// ───────────────────────────── the run ─────────────────────────────

interface Phase {
  phase: "holds" | "checkouts";
  ops: number;
  seconds: number;
  opsPerSecond: number;
  /** workerd process CPU (all threads) per operation, µs. */
  processCpuUsPerOp: number;
  /** The profile's non-idle time per operation (thread wall time: above the CPU time on a loaded machine). */
  profiledUsPerOp: number;
  /** workerd CPU µs per operation by step: the profile's share of each step × processCpuUsPerOp. */
  steps: Record<string, number>;
}

const mail = await benchMail(PORT + 2);
// CRON off: its minute's work (rollups, reconciliation) is no operation's cost, and a phase runs until workerd is quiet.
const bw = await startBreakwater(PORT, { INSPECTOR_PORT: String(INSPECTOR), RATE_LIMITS, CRON: "off", ...mail?.env }, C * 2);
const phases: Phase[] = [];
try {
  const pid = workerdOf("scripts/serve.ts", PORT);
  if (!pid) throw new Error("workerd process not found");
  const cdp = await inspect(INSPECTOR);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: SAMPLING_US });

  const organizer = await bw.token("profile-organizer", "organizer");
  const buyerCount = Math.max(C * 2, Math.ceil((HOLDS + CHECKOUTS + 2 * C + 100) / 40));
  const buyers = await Promise.all(Array.from({ length: buyerCount }, (_, i) => bw.token(buyerId("profile-buyer", i), "buyer")));
  const now = Date.now();
  const created = await bw.request(
    "POST",
    "/v1/events",
    {
      name: "Profile",
      venue: "Loopback",
      startsAt: new Date(now + 86_400_000).toISOString(),
      saleStartsAt: new Date(now - 60_000).toISOString(),
      currency: "EUR",
      perCustomerLimit: 50,
      sections: [
        {
          id: "hot",
          name: "Hot",
          kind: "seated",
          price: 100,
          rows: Array.from({ length: Math.ceil((HOLDS + 100) / 100) }, (_, i) => ({ id: `r${i}`, seats: 100 })),
        },
        { id: "ga", name: "GA", kind: "ga", price: 4500, capacity: CHECKOUTS + 100, shards: 1 },
      ],
    },
    organizer,
  );
  if (created.status !== 201) throw new Error(`create event ${created.status} ${created.body}`);
  const eventId = (JSON.parse(created.body) as { event: { id: string } }).event.id;

  const hold = async (section: string, i: number): Promise<string> => {
    const r = await bw.request("POST", `/v1/events/${eventId}/holds`, { sectionId: section, quantity: 1 }, buyers[i % buyerCount]);
    if (r.status !== 201) throw new Error(`hold ${r.status} ${r.body}`);
    return (JSON.parse(r.body) as { hold: { id: string } }).hold.id;
  };
  const pay = async (holdId: string, i: number): Promise<void> => {
    const r = await bw.request("POST", "/v1/orders", { holdId, payment: { method: "sandbox", token: "tok_ok" } }, buyers[i % buyerCount]);
    if (r.status !== 201) throw new Error(`order ${r.status} ${r.body}`);
  };
  /** Runs `n` operations `C` at a time. */
  const loop = async (n: number, op: (i: number) => Promise<void>): Promise<number> => {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: C }, async () => {
        for (let i = next++; i < n; i = next++) await op(i);
      }),
    );
    return (performance.now() - t0) / 1000;
  };
  /** Waits until workerd is idle (under 5 % of a core over half a second): queue consumers of earlier work done. */
  const quiet = async () => {
    for (let tries = 0; tries < 60; tries++) {
      const c0 = cpuSeconds(pid) ?? 0;
      await new Promise((r) => setTimeout(r, 500));
      if ((cpuSeconds(pid) ?? 0) - c0 < 0.025) return;
    }
  };
  const profiled = async (phase: Phase["phase"], n: number, op: (i: number) => Promise<void>) => {
    const cpu0 = cpuSeconds(pid) ?? 0;
    await cdp.send("Profiler.start");
    const seconds = await loop(n, op);
    // The queue consumers the operations triggered are part of their cost: the profile runs until they are done.
    await quiet();
    const { profile } = (await cdp.send("Profiler.stop")) as { profile: Profile };
    const cpu = (cpuSeconds(pid) ?? 0) - cpu0;
    if (process.env.PROFILE_DUMP) writeFileSync(`${process.env.PROFILE_DUMP}-${phase}.cpuprofile`, JSON.stringify(profile));
    const steps = attribute(profile, isStubCall);
    steps.delete("(idle)");
    const js = [...steps.values()].reduce((a, b) => a + b, 0);
    // The profile's clock is the thread's wall time (a descheduled thread still "runs"), /proc's is CPU: the
    // shares come from the profile, the µs from /proc (workerd's other threads folded in proportionally).
    const perOp: Record<string, number> = {};
    for (const [k, v] of [...steps].sort((a, b) => b[1] - a[1])) perOp[k] = ((v / js) * cpu * 1e6) / n;
    phases.push({
      phase,
      ops: n,
      seconds,
      opsPerSecond: n / seconds,
      processCpuUsPerOp: (cpu * 1e6) / n,
      profiledUsPerOp: js / n,
      steps: perOp,
    });
  };

  // Warm-up (not profiled): every path once per buyer connection, so the isolate has compiled them.
  const warm = await Promise.all(Array.from({ length: C }, (_, i) => hold("ga", i)));
  await Promise.all(warm.map((h, i) => pay(h, i)));
  await loop(100, async (i) => void (await hold("hot", i)));

  await quiet();
  await profiled("holds", HOLDS, async (i) => void (await hold("hot", i)));
  const holdIds: string[] = [];
  await loop(CHECKOUTS, async (i) => {
    holdIds[i] = await hold("ga", i);
  });
  await quiet();
  await profiled("checkouts", CHECKOUTS, (i) => pay(holdIds[i] as string, i));
  cdp.close();
  if (mail) console.log(`mails delivered to the sink: ${mail.received()} of ${CHECKOUTS + C} orders`);
} finally {
  await bw.stop();
  await mail?.close();
}

const rows = [...new Set(phases.flatMap((p) => Object.keys(p.steps)))];
const fmt = (n: number | undefined) => (n === undefined || n < 0.5 ? "–" : n.toFixed(0));
console.log(`\nbench/profile: CPU µs per operation by step (${os.cpus().length} cores, sampling ${SAMPLING_US} µs)\n`);
console.log(`| step | ${phases.map((p) => `${p.phase} µs/op | share`).join(" | ")} |`);
console.log(`|---|${phases.map(() => "---:|---:").join("|")}|`);
for (const r of rows)
  console.log(
    `| ${r} | ${phases.map((p) => `${fmt(p.steps[r])} | ${p.steps[r] ? `${((100 * (p.steps[r] ?? 0)) / p.processCpuUsPerOp).toFixed(1)} %` : "–"}`).join(" | ")} |`,
  );
console.log(`| **workerd process total** | ${phases.map((p) => `**${fmt(p.processCpuUsPerOp)}** | 100 %`).join(" | ")} |`);
console.log(`| (profiled JS thread time, wall clock) | ${phases.map((p) => `${fmt(p.profiledUsPerOp)} | `).join(" | ")} |`);
console.log(`| (closed-loop rate, ${C} clients) | ${phases.map((p) => `${p.opsPerSecond.toFixed(0)}/s | `).join(" | ")} |`);
const file = writeResults("profile", { ...runInfo(), concurrency: C, samplingUs: SAMPLING_US, rateLimits: RATE_LIMITS, phases });
console.log(`\nwrote ${file}`);

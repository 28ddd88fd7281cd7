/**
 * `npm run drop`: one whole ticket sale against Breakwater, with faults, checked from its history.
 *
 * Starts Breakwater the way `npm run serve` does (workerd through miniflare, direct socket, fresh state,
 * FAULT_INJECTION on, rate limits off: every buyer comes from this one address) or targets `--url`;
 * creates an event (a seated section and a GA section with shards, waiting room on, the sale opening
 * `--open-after` seconds after the start); runs `--buyers` buyers on an open arrival model (buyer.ts);
 * opens the fault windows of `--faults`; when the sale is over, waits for the queues to drain (replaying
 * dead letters as an operator would); reads the final state through the public and admin API; runs the
 * checker (checker.ts); writes a JSON report and an HTML page (report.ts). The last line printed is one
 * JSON object; the exit code is 1 when the checker found a violation.
 *
 * The client is built to hold up on a small, shared machine, and to say when it did not: one timer for
 * every wait (scheduler.ts), at most `--in-flight` requests on the wire (others wait their turn on the
 * client, recorded apart from latency), at most `--max-live` buyers running at once (later arrivals wait
 * in a client-side backlog, each such wait recorded in the history and reported), and once a second a
 * sample of its own lag (how late its timers fired) beside the backlog and the requests in flight. The
 * report says from these whether the run measured Breakwater or the client.
 *
 * Faults (`--faults all | none | a comma list`, default all), relative to the opening, each window
 * `--fault-seconds` long (default 20):
 * - inventory_slow: from the opening, every Inventory DO call stalls its object 25 ms after it;
 * - payments: from F/2, the sandbox provider fails like an outage (charges and voids);
 * - shard_writes: from F, every order-shard write fails (the consumer retries, then dead-letters);
 * - kill: at 1.5·F + 5 s, the runtime (node and workerd) is killed with SIGKILL and restarted on the same
 *   state; the windows still due are opened again.
 */
import type { ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { localVars } from "../../scripts/serve.ts";
import { spawnUntilReady } from "../lib/breakwater-process.ts";
import { cpuSeconds, workerdOf } from "../lib/proc-cpu.ts";
import { resultsPath, runInfo } from "../lib/results.ts";
import { type BuyerPlan, type Outcome, planBuyers, runBuyer, type SaleContext } from "./buyer.ts";
import { check } from "./checker.ts";
import { DropClient } from "./client.ts";
import { type FinalState, type History, Recorder } from "./history.ts";
import { renderHtml, series, summarize } from "./report.ts";
import { lagFigures, Scheduler } from "./scheduler.ts";

const root = path.resolve(import.meta.dirname, "..", "..");
export const FAULTS = ["inventory_slow", "payments", "shard_writes", "kill"] as const;
export type Fault = (typeof FAULTS)[number];

const { values: args } = parseArgs({
  options: {
    buyers: { type: "string", default: "20000" },
    seats: { type: "string", default: "2000" },
    seed: { type: "string" },
    faults: { type: "string", default: "all" },
    url: { type: "string" },
    port: { type: "string" },
    "open-after": { type: "string", default: "30" },
    "admit-per-minute": { type: "string", default: "6000" },
    "fault-seconds": { type: "string", default: "20" },
    "slow-ms": { type: "string", default: "25" },
    "sale-seconds": { type: "string", default: "120" },
    "drain-seconds": { type: "string", default: "90" },
    "hold-seconds": { type: "string", default: "30" },
    "late-seconds": { type: "string", default: "45" },
    "in-flight": { type: "string", default: "64" },
    "max-live": { type: "string", default: "4000" },
    "timeout-ms": { type: "string", default: "15000" },
    out: { type: "string" },
    quiet: { type: "boolean", default: false },
    "reuse-build": { type: "boolean", default: false },
  },
  strict: true,
});

/** A whole number option within bounds (refuses anything else). */
function intOpt(name: keyof typeof args, min: number, max: number): number {
  const raw = args[name];
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name}: a whole number in [${min}, ${max}], not ${String(raw)}`);
  return n;
}

const opts = {
  buyers: intOpt("buyers", 1, 100_000),
  seats: intOpt("seats", 50, 20_000),
  seed: args.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : intOpt("seed", 0, 2 ** 31),
  openAfter: intOpt("open-after", 2, 600),
  admitPerMinute: intOpt("admit-per-minute", 1, 1_000_000),
  faultSeconds: intOpt("fault-seconds", 1, 300),
  slowMs: intOpt("slow-ms", 1, 5_000),
  saleSeconds: intOpt("sale-seconds", 5, 1_800),
  drainSeconds: intOpt("drain-seconds", 0, 1_800),
  holdSeconds: intOpt("hold-seconds", 30, 3_600),
  lateSeconds: intOpt("late-seconds", 0, 600),
  inFlight: intOpt("in-flight", 1, 1_024),
  maxLive: intOpt("max-live", 1, 100_000),
  timeoutMs: intOpt("timeout-ms", 100, 120_000),
  faults: parseFaults(args.faults ?? "all"),
  url: args.url,
};

function parseFaults(v: string): Fault[] {
  if (v === "all") return [...FAULTS];
  if (v === "none" || v === "") return [];
  const names = v.split(",").map((s) => s.trim());
  for (const n of names)
    if (!(FAULTS as readonly string[]).includes(n)) throw new Error(`--faults: all, none or a list of ${FAULTS.join(", ")}; not ${n}`);
  return names as Fault[];
}
if (opts.url && opts.faults.includes("kill")) throw new Error("--faults kill needs the drop's own server (no --url)");
if (opts.url && !/^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):\d+$/.test(opts.url))
  throw new Error(`--url: a loopback http origin, not ${opts.url}`);

const log = (line: string) => {
  if (!args.quiet) console.log(line);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** A free loopback port. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });

/**
 * An HS256 token as the dev-token route issues it (lib/auth.ts `issueToken`, whose imports Node cannot
 * load without a bundler): the drop signs its buyers' tokens itself instead of asking the server 20,000 times.
 */
function issueToken(claims: { sub: string; role: string }, secret: string, ttlSeconds: number): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ ...claims, iat: now, exp: now + ttlSeconds })}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

// ───────────────────────────── the server ─────────────────────────────

/** The drop's own Breakwater: a process group (node + workerd) on one state directory, killable and restartable. */
class Server {
  child: ChildProcess | undefined;
  readonly env: Record<string, string>;
  readonly port: number;
  readonly stateDir: string;
  constructor(port: number, stateDir: string) {
    this.port = port;
    this.stateDir = stateDir;
    this.env = {
      PORT: String(port),
      STATE_DIR: stateDir,
      REQUEST_LOG: "off",
      RATE_LIMITS: "off",
      FAULT_INJECTION: "true",
      DEV_AUTH: "true",
      // The API as on Cloudflare (/v1/* runs the Worker first), without miniflare's local emulation of the
      // static-asset router in front of every request (scripts/serve.ts ServeOptions.assets).
      ASSETS: "off",
    };
  }
  /** The server's stderr (its error log lines) goes to `logFd`, not to the drop's terminal. */
  async start(build: boolean, logFd: number): Promise<void> {
    this.child = await spawnUntilReady(
      "scripts/serve.ts",
      "Breakwater is serving",
      { ...this.env, BUILD: build ? "1" : "0" },
      120_000,
      true,
      logFd,
    );
    // Its stdout is piped (the ready line); keep reading it so that a full pipe never blocks the server.
    this.child.stdout?.on("data", (chunk: Buffer) => writeSync(logFd, chunk));
  }
  /** SIGKILL to the whole group: no cleanup, no flush, like a machine losing power. */
  kill(): void {
    const pid = this.child?.pid;
    if (pid) process.kill(-pid, "SIGKILL");
    this.child = undefined;
  }
  async stop(): Promise<void> {
    const pid = this.child?.pid;
    if (!pid) return;
    try {
      process.kill(-pid, "SIGTERM");
    } catch {
      return;
    }
    for (let i = 0; i < 30; i++) {
      await sleep(100);
      try {
        process.kill(-pid, 0);
      } catch {
        return;
      }
    }
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

// ───────────────────────────── admin calls ─────────────────────────────

async function json<T>(base: string, method: string, p: string, token?: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(base + p, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
}
async function must<T>(base: string, method: string, p: string, token?: string, body?: unknown): Promise<T> {
  const r = await json<T>(base, method, p, token, body);
  if (r.status >= 300) throw new Error(`${method} ${p} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  return r.body;
}

// ───────────────────────────── run ─────────────────────────────

// One results file per scenario and day (bench/lib/results.ts): bench/results/drop-<date>-<faults>.json for
// the default size, drop-<date>-<buyers>b<seats>s-<faults>.json for another; beside it the HTML report,
// the history (.history.json, not kept in git) and the server's log (.server.log, not kept in git).
const scenario = `${opts.buyers === 20_000 && opts.seats === 2_000 ? "" : `${opts.buyers}b${opts.seats}s-`}${
  opts.faults.length === FAULTS.length ? "all" : opts.faults.length === 0 ? "none" : opts.faults.join("+")
}${opts.admitPerMinute === 6_000 ? "" : `-admit${opts.admitPerMinute}`}`;
const jsonPath = resultsPath("drop", { variant: scenario, ...(args.out ? { dir: path.resolve(args.out) } : {}) });
const runName = path.basename(jsonPath, ".json");
const outDir = path.dirname(jsonPath);
const serverLog = path.join(outDir, `${runName}.server.log`);
const loadAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
const server = opts.url ? undefined : new Server(await freePort(), mkdtempSync(path.join(os.tmpdir(), "bw-drop-")));
const logFd = server ? openSync(serverLog, "a") : -1;
// The server leads its own process group (so the kill fault takes workerd with it), so a Ctrl-C at the
// terminal does not reach it: stop it here.
for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.once(sig, () => {
    void server
      ?.stop()
      .then(() => rmSync(server.stateDir, { recursive: true, force: true }))
      .finally(() => process.exit(130));
  });
let exitCode = 1;
try {
  if (server) {
    log(
      `drop: starting Breakwater (workerd via miniflare, direct socket, state ${server.stateDir}; its log: ${path.relative(root, serverLog)})`,
    );
    await server.start(!args["reuse-build"], logFd);
  }
  const base = opts.url ?? `http://127.0.0.1:${server?.port}`;
  const secret = server ? localVars().JWT_SECRET : undefined;
  const tokenFor = async (sub: string, role: "buyer" | "organizer" | "admin"): Promise<string | null> => {
    if (secret) return issueToken({ sub, role }, secret, 3_600);
    const r = await json<{ token: string }>(base, "POST", "/v1/auth/dev-token", undefined, { sub, role });
    return r.status === 200 ? r.body.token : null;
  };
  const organizer = (await tokenFor("drop-organizer", "organizer")) as string;
  const admin = (await tokenFor("drop-admin", "admin")) as string;

  // ── the event ──
  const seatedCap = Math.max(20, 20 * Math.floor((opts.seats * 0.4) / 20));
  const gaCap = opts.seats - seatedCap;
  const gaShards = Math.min(16, Math.max(2, Math.ceil(gaCap / 300)));
  const lead = 2_000;
  const origin = Date.now() + lead;
  const openAtMs = origin + opts.openAfter * 1000;
  const created = await must<{ event: { id: string; perCustomerLimit: number; sections: { id: string; capacity: number }[] } }>(
    base,
    "POST",
    "/v1/events",
    organizer,
    {
      name: `Drop ${new Date().toISOString()} seed ${opts.seed}`,
      venue: "Loopback Arena",
      startsAt: new Date(origin + 7 * 86_400_000).toISOString(),
      saleStartsAt: new Date(openAtMs).toISOString(),
      currency: "EUR",
      perCustomerLimit: 4,
      holdSeconds: opts.holdSeconds,
      waitingRoom: { enabled: true, admitPerMinute: opts.admitPerMinute },
      sections: [
        {
          id: "a",
          name: "Block A",
          kind: "seated",
          price: 8900,
          rows: Array.from({ length: seatedCap / 20 }, (_, i) => ({ id: String(i + 1), seats: 20 })),
        },
        { id: "ga", name: "Floor", kind: "ga", price: 4500, capacity: gaCap, shards: gaShards },
      ],
    },
  );
  const event = created.event;
  const capacity = Object.fromEntries(event.sections.map((s) => [s.id, s.capacity]));
  log(
    `drop: event ${event.id}: ${opts.seats} seats (seated a: ${seatedCap}, GA: ${gaCap} over ${gaShards} shards), ${opts.buyers} buyers, ` +
      `sale opens in ${opts.openAfter} s, admission ceiling ${opts.admitPerMinute}/min, faults: ${opts.faults.join(",") || "none"}, seed ${opts.seed}`,
  );
  await sleep(origin - Date.now());

  const rec = new Recorder(origin);
  const sched = new Scheduler(() => rec.now());
  const openAt = openAtMs - origin;
  const client = new DropClient(base, rec, { connections: opts.inFlight, maxInFlight: opts.inFlight, timeoutMs: opts.timeoutMs });
  const live: SaleContext["live"] = { arrived: 0, joined: 0, admitted: 0, held: 0, paid: 0, tickets: 0, soldOut: false };
  const deadline = openAt + opts.saleSeconds * 1000;
  const sale: SaleContext = {
    client,
    eventId: event.id,
    seatedSection: "a",
    gaSection: "ga",
    perCustomerLimit: event.perCustomerLimit,
    token: (b) => tokenFor(b, "buyer"),
    deadline,
    now: () => rec.now(),
    sleep: (ms) => sched.sleep(ms),
    live,
  };

  // ── faults ──
  const F = opts.faultSeconds * 1000;
  const windows: { name: Exclude<Fault, "kill">; start: number; end: number }[] = [];
  if (opts.faults.includes("inventory_slow")) windows.push({ name: "inventory_slow", start: openAt, end: openAt + F });
  if (opts.faults.includes("payments")) windows.push({ name: "payments", start: openAt + F / 2, end: openAt + F / 2 + F });
  if (opts.faults.includes("shard_writes")) windows.push({ name: "shard_writes", start: openAt + F, end: openAt + 2 * F });
  const killAt = opts.faults.includes("kill") ? openAt + 1.5 * F + 5_000 : undefined;
  const openWindow = async (w: (typeof windows)[number]) => {
    const seconds = Math.max(0, (w.end - rec.now()) / 1000);
    if (seconds <= 0) return;
    await must(base, "PUT", "/v1/admin/faults", admin, {
      name: w.name,
      seconds,
      ...(w.name === "inventory_slow" ? { delayMs: opts.slowMs } : {}),
    });
  };
  let killing = false;
  let activeFault = () =>
    [...windows.filter((w) => rec.now() >= w.start && rec.now() < w.end).map((w) => w.name), ...(killing ? ["kill"] : [])].join(",");
  const faultTasks = windows.map(async (w) => {
    await sched.at(w.start);
    for (let i = 0; i < 20; i++) {
      try {
        await openWindow(w);
        break;
      } catch (err) {
        // The server may be restarting (kill): the window opens once it answers.
        if (i === 19) throw err;
        await sleep(500);
      }
    }
    rec.fault(w.name, w.start, w.end, w.name === "inventory_slow" ? `${opts.slowMs} ms stall per Inventory DO call` : undefined);
  });
  const killTask = (async () => {
    if (killAt === undefined || !server) return;
    await sched.at(killAt);
    killing = true;
    const start = rec.now();
    server.kill();
    log(`drop: t=${(start / 1000).toFixed(1)} s SIGKILL to the runtime; restarting on the same state`);
    await server.start(false, logFd);
    for (const w of windows) if (w.start <= rec.now() && w.end > rec.now()) await openWindow(w);
    const end = rec.now();
    killing = false;
    rec.fault("kill", start, end, `SIGKILL, restarted in ${((end - start) / 1000).toFixed(1)} s`);
    log(`drop: t=${(end / 1000).toFixed(1)} s the runtime answers again`);
  })();

  // ── the buyers: an open arrival model, at most --max-live running, the others in the client's backlog ──
  const plans = planBuyers(opts.buyers, opts.seed, openAt, opts.lateSeconds * 1000);
  const outcomes: Record<string, number> = {};
  let running = 0;
  let finished = 0;
  const backlog: (BuyerPlan | undefined)[] = [];
  let backlogHead = 0;
  let allDone = () => {};
  const buyersDone = new Promise<void>((resolve) => {
    allDone = resolve;
  });
  const end = (o: Outcome | "client_backlog") => {
    outcomes[o] = (outcomes[o] ?? 0) + 1;
    if (++finished === plans.length) allDone();
  };
  const startBuyer = (p: BuyerPlan) => {
    running++;
    runBuyer(p, sale)
      .catch((err: unknown): Outcome => {
        console.error(`buyer ${p.name} failed in the drop itself: ${String(err)}`);
        return "gave_up";
      })
      .then((o) => {
        running--;
        // The next buyer of the backlog takes the place; those the sale's end reached there never started.
        for (let next = backlog[backlogHead]; next && running < opts.maxLive; next = backlog[backlogHead]) {
          backlog[backlogHead++] = undefined;
          if (rec.now() >= deadline) {
            rec.backlog({ buyer: next.name, arrived: next.arriveAt });
            end("client_backlog");
          } else {
            rec.backlog({ buyer: next.name, arrived: next.arriveAt, started: rec.now() });
            startBuyer(next);
          }
        }
        end(o);
      });
  };
  const arrivals = (async () => {
    for (const p of plans) {
      if (p.arriveAt > rec.now()) await sched.at(p.arriveAt);
      live.arrived++;
      if (running < opts.maxLive && backlogHead === backlog.length) startBuyer(p);
      else backlog.push(p);
    }
  })();

  // ── progress, and the client's own lag ──
  let phase = "pre-sale";
  const t0 = Date.now();
  let sampling = true;
  // CPU: the drop's own process, and the server's workerd (found again after a kill restarts it).
  let cpuAt = performance.now();
  let clientCpu = process.cpuUsage();
  let serverPid: number | undefined;
  let serverCpu: number | undefined;
  const cpuSample = (): { client: number; server?: number } => {
    const wall = Math.max(1, performance.now() - cpuAt);
    cpuAt = performance.now();
    const used = process.cpuUsage(clientCpu);
    clientCpu = process.cpuUsage();
    const out: { client: number; server?: number } = { client: Math.round((used.user + used.system) / 10 / wall) / 100 };
    if (!server) return out;
    serverPid ??= workerdOf("scripts/serve.ts", server.port);
    const sec = serverPid === undefined ? undefined : cpuSeconds(serverPid);
    if (sec === undefined) {
      serverPid = undefined;
      serverCpu = undefined;
    } else {
      if (serverCpu !== undefined) out.server = Math.round(((sec - serverCpu) * 100_000) / wall) / 100;
      serverCpu = sec;
    }
    return out;
  };
  const sampler = (async () => {
    let next = rec.now() + 1_000;
    while (sampling) {
      await sched.at(next);
      if (!sampling) break;
      next = Math.max(next + 1_000, rec.now() + 500);
      const lag = lagFigures(sched.takeLateness());
      const queued = backlog.length - backlogHead;
      const cpu = cpuSample();
      rec.client({ at: rec.now(), lag, live: running, backlog: queued, inFlight: client.live.inFlight, queued: client.live.queued, cpu });
      const lat = client.live.latencies.splice(0).sort((a, b) => a - b);
      const p99 = lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] ?? 0;
      if (phase === "pre-sale" && rec.now() >= openAt) phase = "sale";
      log(
        `[${String(Math.round((Date.now() - t0) / 1000)).padStart(4)} s] ${phase.padEnd(8)} arrived ${live.arrived} joined ${live.joined} admitted ${live.admitted} ` +
          `held ${live.held} paid ${live.paid} (${live.tickets} tickets) | errors ${client.live.errors} | p99 ${Math.round(p99)} ms (${lat.length} req/s) | ` +
          `client: lag p99 ${lag.p99} ms, live ${running}, backlog ${queued}, in flight ${client.live.inFlight}+${client.live.queued} | ` +
          `CPU cores: client ${cpu.client}, server ${cpu.server ?? "–"}, load ${os.loadavg()[0]?.toFixed(1)} | fault: ${activeFault() || "–"}`,
      );
    }
  })();

  // ── the sale ──
  rec.phase("arrivals");
  const opening = sched.at(openAt).then(() => rec.phase("opening"));
  await arrivals;
  await buyersDone;
  await opening;
  await Promise.all([...faultTasks, killTask]);
  rec.phase("sale_end");
  phase = "drain";
  activeFault = () => "";

  // ── drain: queues, dead letters, pending refunds ──
  rec.phase("drain");
  const drainUntil = Date.now() + opts.drainSeconds * 1000;
  let drained = "";
  let replayed = 0;
  for (;;) {
    const dead = await must<{ deadLetters: { id: string }[] }>(
      base,
      "GET",
      "/v1/admin/dead-letters?queue=breakwater-orders&status=dead&limit=500",
      admin,
    );
    if (dead.deadLetters.length) {
      const r = await must<{ replayed: string[] }>(base, "POST", "/v1/admin/dead-letters/replay", admin, { queue: "breakwater-orders" });
      replayed += r.replayed.length;
      rec.phase("replay", `${r.replayed.length} dead letters replayed`);
    }
    const recon = await must<FinalState["reconciliation"]>(base, "POST", `/v1/admin/reconciliation/${event.id}?graceMs=0`, admin);
    const charges = await must<{ charges: FinalState["charges"] }>(base, "GET", "/v1/admin/payments/sandbox/charges", admin);
    const succeeded = charges.charges.filter((c) => c.status === "succeeded" && c.idempotencyKey.includes(`.${event.id}.`)).length;
    const state = `missing ${recon.missing.length}, dead letters ${dead.deadLetters.length}, succeeded charges ${succeeded} / orders ${recon.soldInInventory}`;
    if (!recon.missing.length && !dead.deadLetters.length && succeeded === recon.soldInInventory) {
      drained = state;
      break;
    }
    if (Date.now() >= drainUntil) {
      drained = `not drained after ${opts.drainSeconds} s: ${state}`;
      break;
    }
    log(`drop: draining: ${state}`);
    await sleep(2_000);
  }
  rec.phase("drained", drained);
  log(`drop: ${drained}${replayed ? ` (${replayed} dead letters replayed)` : ""}`);
  sampling = false;
  sched.close();
  await sampler;
  // Availability is published about a second after a change.
  await sleep(2_000);

  // ── the final state, through the API ──
  const availability = await must<{ sections: FinalState["availability"] }>(base, "GET", `/v1/events/${event.id}/availability`);
  const seatMap = await must<{ seats: FinalState["seatMaps"][string] }>(base, "GET", `/v1/events/${event.id}/sections/a/seats`);
  const reconciliation = await must<FinalState["reconciliation"]>(base, "POST", `/v1/admin/reconciliation/${event.id}?graceMs=0`, admin);
  const charges = await must<{ charges: FinalState["charges"] }>(base, "GET", "/v1/admin/payments/sandbox/charges", admin);
  const deadLeft = await must<{ deadLetters: unknown[] }>(
    base,
    "GET",
    "/v1/admin/dead-letters?queue=breakwater-orders&status=dead&limit=500",
    admin,
  );
  const payers = [
    ...new Set(rec.records.filter((r) => r.kind === "request" && r.step === "pay").map((r) => (r.kind === "request" ? r.buyer : ""))),
  ];
  const shardOrders: FinalState["shardOrders"] = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < payers.length; i = next++) {
        const b = payers[i] as string;
        const token = (await tokenFor(b, "buyer")) as string;
        const r = await must<{
          orders: { id: string; eventId: string; sectionId: string; seats: string[]; quantity: number; total: number }[];
        }>(base, "GET", "/v1/orders?limit=100", token);
        shardOrders[b] = r.orders
          .filter((o) => o.eventId === event.id)
          .map((o) => ({ id: o.id, sectionId: o.sectionId, seats: o.seats, quantity: o.quantity, total: o.total }));
      }
    }),
  );
  const final: FinalState = {
    availability: availability.sections,
    seatMaps: { a: seatMap.seats },
    reconciliation,
    charges: charges.charges.filter((c) => c.idempotencyKey.includes(`.${event.id}.`)),
    shardOrders,
    deadLetters: deadLeft.deadLetters.length,
  };
  await client.close();

  // ── check and report ──
  const history: History = { eventId: event.id, origin, openAt, perCustomerLimit: event.perCustomerLimit, capacity, records: rec.records };
  const verdict = check(history, final);
  const sold = availability.sections.reduce((a, s) => a + s.sold, 0);
  const summary = summarize(history, {
    buyers: opts.buyers,
    seats: opts.seats,
    admitPerMinute: opts.admitPerMinute,
    outcomes,
    sold,
    orders: verdict.orders,
  });
  const s = series(history);
  const baseName = runName;
  const loadAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const options = { ...opts, faults: opts.faults };
  const report = {
    ...runInfo(),
    scenario,
    command: `npm run drop -- ${process.argv.slice(2).join(" ")}`.trim(),
    /** The machine's 1/5/15-minute load averages at the start and end of the run (others' work included). */
    loadAverage: { start: loadAtStart, end: loadAtEnd },
    options,
    eventId: event.id,
    summary,
    verdict,
    drained,
    deadLettersReplayed: replayed,
    final: {
      availability: final.availability,
      reconciliation: final.reconciliation,
      deadLetters: final.deadLetters,
      charges: final.charges.length,
    },
    series: s,
  };
  const htmlPath = path.join(outDir, `${baseName}.html`);
  const historyPath = path.join(outDir, `${baseName}.history.json`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(htmlPath, renderHtml({ history, series: s, summary, verdict, options, seed: opts.seed }));
  writeFileSync(historyPath, JSON.stringify({ history, final }));

  log("");
  log(
    `| buyers | seats | sold | tickets/min (to 90 %) | admitted/min (ceiling) | ${["join", "poll", "hold", "pay", "order"].map((st) => `p99 ${st} ms`).join(" | ")} | violations |`,
  );
  log(`|---:|---:|---:|---:|---:|${"---:|".repeat(5)}---:|`);
  log(
    `| ${opts.buyers} | ${opts.seats} | ${sold} | ${summary.ticketsPerMinute} (${summary.ticketsPerMinute90}) | ${summary.admittedPerMinute} (${opts.admitPerMinute}) | ` +
      `${(["join", "poll", "hold", "pay", "order"] as const).map((st) => summary.steps[st].p99).join(" | ")} | ${Object.values(verdict.counts).reduce((a, b) => a + (b ?? 0), 0)} |`,
  );
  log(`drop: ${summary.client.verdict}`);
  if (!verdict.ok) {
    console.error(`\ndrop: the checker found violations (${JSON.stringify(verdict.counts)}):`);
    for (const v of verdict.violations) {
      console.error(`\n[${v.rule}] ${v.message}`);
      if (v.requestIds.length) console.error(`  X-Request-Id: ${v.requestIds.join(", ")}`);
      for (const line of v.timeline.slice(0, 40)) console.error(`  ${line}`);
    }
  }
  log(`drop: report ${path.relative(root, htmlPath)} (JSON ${path.relative(root, jsonPath)}, history ${path.relative(root, historyPath)})`);
  exitCode = verdict.ok ? 0 : 1;
  console.log(
    JSON.stringify({
      ok: verdict.ok,
      violations: Object.values(verdict.counts).reduce((a, b) => a + (b ?? 0), 0),
      buyers: opts.buyers,
      seats: opts.seats,
      sold,
      ticketsPerMinute: summary.ticketsPerMinute,
      admittedPerMinute: summary.admittedPerMinute,
      faults: opts.faults,
      seed: opts.seed,
      report: path.relative(root, htmlPath),
    }),
  );
} finally {
  await server?.stop();
  if (server) {
    rmSync(server.stateDir, { recursive: true, force: true });
    closeSync(logFd);
  }
  process.exitCode = exitCode;
}

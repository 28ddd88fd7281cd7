/**
 * bench/holds: holds per second on one hot seated section and on one GA section with K = 1, 2, 4, 8
 * capacity shards, and — same machine, same seats, same concurrency — two baselines a team would pick
 * instead: PostgreSQL (`SELECT … FOR UPDATE SKIP LOCKED` on a seats table) and Redis (one Lua script).
 *
 * Path measured for Breakwater: HTTP over loopback → workerd through miniflare with unsafeDirectSockets
 * (no dev proxy) → Hono edge (auth, validation, idempotency-less) → LimitLedger DO → Inventory DO.
 * Each baseline runs twice: called directly from Node (no HTTP layer: its floor), and behind a minimal
 * Node HTTP server (bench/lib/baseline-server.ts) driven over the same loopback HTTP as Breakwater.
 *
 * Each run sells out the section: `C` concurrent buyers loop "hold 1 place" until sold out; holds/s =
 * places held / time, p99 of the holds answered. After each Breakwater run the answers must count exactly
 * the capacity and the published availability must show every place held (invariant 1). Saturation:
 * Breakwater's sections (a fresh event per step) and the PostgreSQL baseline behind HTTP also run at each
 * of SATURATION's concurrencies; each one's saturation throughput is its highest holds/s with p99 <= 1 s.
 *
 * Env: SEATS (2000), CONCURRENCY (64), SATURATION ("64,128,256"; "" for none), PORT (8799), SHARDS
 * ("1,2,4,8"), SKIP ("pg,redis" to skip).
 * Needs PostgreSQL at 127.0.0.1:5432 (creates the database breakwater_bench if missing) and Redis at 127.0.0.1:6379.
 */
import { spawn } from "node:child_process";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import postgres from "postgres";
import { createClient } from "redis";
import { ensureBenchDatabase } from "./lib/bench-db.ts";
import { percentile, startBreakwater } from "./lib/breakwater-process.ts";
import { envInt, SATURATION_P99_MS, saturationSteps } from "./lib/options.ts";
import { runInfo, writeResults } from "./lib/results.ts";

const root = path.resolve(import.meta.dirname, "..");
const SEATS = envInt("SEATS", 2_000, 1, 1_000_000);
const C = envInt("CONCURRENCY", 64, 1, 1_024);
const PORT = envInt("PORT", 8799, 1_024, 65_535);
const SHARDS = (process.env.SHARDS ?? "1,2,4,8").split(",").map(Number);
const SKIP = new Set((process.env.SKIP ?? "").split(",").filter(Boolean));
/** The concurrencies of the saturation runs (the stated load C among them). */
const STEPS = saturationSteps(C, "64,128,256");
const BUYERS = Math.max(Math.max(...STEPS) * 4, Math.ceil(SEATS / 10) + Math.max(...STEPS));
/** Runs `concurrency` workers that each call `attempt()` until it reports sold out. Returns holds/s, counts and the holds' p99. */
async function race(
  concurrency: number,
  attempt: (worker: number, n: number) => Promise<"held" | "retry" | "sold_out">,
): Promise<{ concurrency: number; held: number; seconds: number; perSecond: number; retries: number; p99: number }> {
  let held = 0;
  let retries = 0;
  const latencies: number[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let n = 0; ; n++) {
        const t0 = performance.now();
        const r = await attempt(w, n);
        if (r === "held") {
          held++;
          latencies.push(performance.now() - t0);
        } else if (r === "retry") retries++;
        else return;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { concurrency, held, seconds, perSecond: held / seconds, retries, p99: percentile(latencies, 99) };
}

/** Sum and count of `breakwater_group_commit_size` per object, from /metrics. */
function groupCommits(metrics: string): Map<string, { sum: number; count: number }> {
  const out = new Map<string, { sum: number; count: number }>();
  for (const m of metrics.matchAll(/^breakwater_group_commit_size_(sum|count)\{object="([^"]+)"\} (\S+)$/gm)) {
    const [, kind, object, value] = m as unknown as [string, "sum" | "count", string, string];
    const e = out.get(object) ?? { sum: 0, count: 0 };
    e[kind] = Number(value);
    out.set(object, e);
  }
  return out;
}

/** Mean requests per storage commit per object between two /metrics readings. */
function meanGroups(before: string, after: string): Record<string, number> {
  const [b, a] = [groupCommits(before), groupCommits(after)];
  const out: Record<string, number> = {};
  for (const [object, e] of a) {
    const p = b.get(object) ?? { sum: 0, count: 0 };
    if (e.count > p.count) out[object] = Number(((e.sum - p.sum) / (e.count - p.count)).toFixed(1));
  }
  return out;
}

interface Row {
  /** Breakwater: mean requests per storage commit, per Durable Object class (lib/group-commit.ts). */
  requestsPerCommit?: Record<string, number>;
  scenario: string;
  /** Concurrent buyers (closed loop). */
  concurrency: number;
  held: number;
  /** p99 of the holds answered, ms. */
  p99: number;
  seconds: number;
  perSecond: number;
  retries: number;
}

async function benchBreakwater(rows: Row[]): Promise<void> {
  const bw = await startBreakwater(PORT, {}, Math.max(...STEPS) * 2);
  const request = bw.request;
  let organizer = "";
  let buyers: string[] = [];
  let metrics = async (): Promise<string> => "";
  try {
    organizer = await bw.token("bench-organizer", "organizer");
    const admin = await bw.token("bench-admin", "admin");
    metrics = async () => (await request("GET", "/metrics", undefined, admin)).body;
    buyers = await Promise.all(Array.from({ length: BUYERS }, (_, i) => bw.token(`bench-buyer-${i}`, "buyer")));
    for (const c of STEPS) await sellOutEvent(c);
  } finally {
    await bw.stop();
  }

  /** One fresh event with every section, each sold out by `c` buyers. */
  async function sellOutEvent(c: number): Promise<void> {
    const now = Date.now();
    const rowsOfSeats = Array.from({ length: Math.ceil(SEATS / 100) }, (_, i) => ({
      id: `r${i + 1}`,
      seats: Math.min(100, SEATS - i * 100),
    }));
    const sections = [
      { id: "hot", name: "Hot seated", kind: "seated", price: 100, rows: rowsOfSeats },
      ...SHARDS.map((k) => ({ id: `ga${k}`, name: `GA K=${k}`, kind: "ga", price: 100, capacity: SEATS, shards: k })),
    ];
    const created = await request(
      "POST",
      "/v1/events",
      {
        name: "Bench holds",
        venue: "Loopback",
        startsAt: new Date(now + 86_400_000).toISOString(),
        saleStartsAt: new Date(now - 60_000).toISOString(),
        currency: "EUR",
        perCustomerLimit: 50,
        sections,
      },
      organizer,
    );
    if (created.status !== 201) throw new Error(`create event ${created.status} ${created.body}`);
    const eventId = (JSON.parse(created.body) as { event: { id: string } }).event.id;
    // Warm-up: one hold per section initializes its DOs (and the buyer tokens' verification cache).
    for (const s of sections) await request("POST", `/v1/events/${eventId}/holds`, { sectionId: s.id, quantity: 1 }, buyers[0]);

    for (const s of sections) {
      const metricsBefore = await metrics();
      let next = 1;
      const r = await race(c, async () => {
        const b = buyers[(next++ % (BUYERS - 1)) + 1] as string;
        const res = await request("POST", `/v1/events/${eventId}/holds`, { sectionId: s.id, quantity: 1 }, b);
        if (res.status === 201) return "held";
        const code = (JSON.parse(res.body) as { code?: string }).code;
        if (code === "sold_out") return "sold_out";
        if (res.status === 409 || res.status === 422 || res.status === 429 || res.status === 503) return "retry";
        throw new Error(`hold ${res.status} ${res.body}`);
      });
      // Invariant 1 (no oversell, nothing lost): every place held exactly once — the answers count the
      // section's capacity, and the published snapshot (it lags by about a second) shows it all held.
      if (r.held + 1 !== SEATS) throw new Error(`${s.id}: ${r.held + 1} holds answered for ${SEATS} places`);
      for (let tries = 0; ; tries++) {
        const a = await request("GET", `/v1/events/${eventId}/availability`);
        const sec = (
          JSON.parse(a.body) as { sections: { id: string; available: number; held: number; sold: number; capacity: number }[] }
        ).sections.find((x) => x.id === s.id);
        if (sec && sec.held === SEATS && sec.available === 0 && sec.sold === 0 && sec.capacity === SEATS) break;
        if (tries >= 40) throw new Error(`${s.id}: availability after the sell-out ${JSON.stringify(sec)}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      const requestsPerCommit = meanGroups(metricsBefore, await metrics());
      rows.push({
        scenario: s.kind === "seated" ? "breakwater seated (1 DO)" : `breakwater GA K=${s.id.slice(2)}`,
        ...r,
        held: r.held + 1,
        requestsPerCommit,
      });
      console.log(
        `  ${rows.at(-1)?.scenario}, ${c} buyers: ${r.held + 1} held in ${r.seconds.toFixed(2)} s → ${r.perSecond.toFixed(0)} holds/s, p99 ${r.p99.toFixed(0)} ms; requests per commit ${JSON.stringify(requestsPerCommit)}`,
      );
    }
  }
}

async function benchPostgres(rows: Row[]): Promise<void> {
  await ensureBenchDatabase();
  const sql = postgres({ host: "127.0.0.1", port: 5432, user: "postgres", database: "breakwater_bench", max: C, onnotice: () => {} });
  try {
    await sql`DROP TABLE IF EXISTS seats`;
    await sql`CREATE TABLE seats (id text PRIMARY KEY, section text NOT NULL, status text NOT NULL DEFAULT 'available', hold_id text, held_until timestamptz)`;
    await sql`CREATE INDEX seats_available ON seats (section, status, id)`;
    await sql`INSERT INTO seats (id, section) SELECT 's' || g, 'hot' FROM generate_series(1, ${SEATS}) g`;
    await sql`ANALYZE seats`;
    let n = 0;
    const r = await race(C, async () => {
      const holdId = `h${n++}`;
      const taken = await sql.begin(
        (tx) => tx`
        UPDATE seats SET status = 'held', hold_id = ${holdId}, held_until = now() + interval '10 minutes'
        WHERE id IN (SELECT id FROM seats WHERE section = 'hot' AND status = 'available' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id`,
      );
      if (taken.length) return "held";
      const [left] = await sql`SELECT count(*)::int AS n FROM seats WHERE section = 'hot' AND status = 'available'`;
      return (left?.n ?? 0) > 0 ? "retry" : "sold_out";
    });
    const [check] = await sql`SELECT count(*)::int AS held, count(DISTINCT hold_id)::int AS holds FROM seats WHERE status = 'held'`;
    if (check?.held !== SEATS || check?.holds !== SEATS)
      throw new Error(`postgres baseline oversold or undersold: ${JSON.stringify(check)}`);
    rows.push({ scenario: "postgres SKIP LOCKED (direct)", ...r });
    console.log(`  postgres: ${r.held} held in ${r.seconds.toFixed(2)} s → ${r.perSecond.toFixed(0)} holds/s`);
  } finally {
    await sql.end();
  }
}

const HOLD_LUA = `
local seat = redis.call('LPOP', KEYS[1])
if not seat then return false end
redis.call('HSET', KEYS[2], seat, ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return seat`;

async function benchRedis(rows: Row[]): Promise<void> {
  const clients = await Promise.all(
    Array.from({ length: Math.min(C, 32) }, () => createClient({ url: "redis://127.0.0.1:6379" }).connect()),
  );
  const first = clients[0];
  if (!first) throw new Error("no redis client");
  try {
    await first.del(["bench:hot:available", "bench:hot:held", "bench:hot:expiry"]);
    for (let i = 0; i < SEATS; i += 1000)
      await first.rPush(
        "bench:hot:available",
        Array.from({ length: Math.min(1000, SEATS - i) }, (_, j) => `s${i + j + 1}`),
      );
    const sha = await first.scriptLoad(HOLD_LUA);
    let n = 0;
    const r = await race(C, async (w) => {
      const client = clients[w % clients.length] ?? first;
      const holdId = `h${n++}`;
      const seat = await client.evalSha(sha, {
        keys: ["bench:hot:available", "bench:hot:held", "bench:hot:expiry"],
        arguments: [holdId, String(Date.now() + 600_000)],
      });
      return seat ? "held" : "sold_out";
    });
    const held = await first.hLen("bench:hot:held");
    if (held !== SEATS) throw new Error(`redis baseline held ${held} of ${SEATS}`);
    rows.push({ scenario: "redis Lua (direct)", ...r });
    console.log(`  redis: ${r.held} held in ${r.seconds.toFixed(2)} s → ${r.perSecond.toFixed(0)} holds/s`);
  } finally {
    await Promise.all(clients.map((c) => c.quit()));
  }
}

/** The same baseline behind a Node HTTP server (bench/lib/baseline-server.ts), driven over loopback HTTP. */
async function benchBehindHttp(rows: Row[], backend: "pg" | "redis", c = C): Promise<void> {
  if (backend === "pg") {
    const sql = postgres({ host: "127.0.0.1", port: 5432, user: "postgres", database: "breakwater_bench", max: 1, onnotice: () => {} });
    await sql`UPDATE seats SET status = 'available', hold_id = NULL, held_until = NULL`;
    await sql.end();
  } else {
    const client = await createClient({ url: "redis://127.0.0.1:6379" }).connect();
    await client.del(["bench:hot:available", "bench:hot:held", "bench:hot:expiry"]);
    for (let i = 0; i < SEATS; i += 1000)
      await client.rPush(
        "bench:hot:available",
        Array.from({ length: Math.min(1000, SEATS - i) }, (_, j) => `s${i + j + 1}`),
      );
    await client.quit();
  }
  const port = PORT + (backend === "pg" ? 1 : 2);
  const child = spawn(process.execPath, [path.join(root, "bench/lib/baseline-server.ts"), backend, String(port)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    child.on("exit", (code) => reject(new Error(`baseline server exited ${code}`)));
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: c * 2 });
  const post = () =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        `http://127.0.0.1:${port}/hold`,
        { method: "POST", agent, headers: { "Content-Type": "application/json", "Content-Length": 2 } },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", reject);
      req.end("{}");
    });
  try {
    const r = await race(c, async () => {
      const status = await post();
      if (status === 201) return "held";
      if (status === 409) return "sold_out";
      throw new Error(`baseline answered ${status}`);
    });
    rows.push({ scenario: `${backend === "pg" ? "postgres" : "redis"} behind Node HTTP`, ...r });
    console.log(
      `  ${backend} behind HTTP, ${c} buyers: ${r.held} held in ${r.seconds.toFixed(2)} s → ${r.perSecond.toFixed(0)} holds/s, p99 ${r.p99.toFixed(0)} ms`,
    );
  } finally {
    agent.destroy();
    child.kill("SIGTERM");
  }
}

const rows: Row[] = [];
console.log(
  `bench/holds: ${SEATS} places per section, ${C} concurrent buyers (saturation steps ${STEPS.join(", ")}), ${os.cpus().length} cores`,
);
console.log("Breakwater path: HTTP → workerd (miniflare, unsafeDirectSockets, no dev proxy) → edge → LimitLedger DO → Inventory DO");
await benchBreakwater(rows);
if (!SKIP.has("pg")) {
  await benchPostgres(rows);
  for (const c of STEPS) await benchBehindHttp(rows, "pg", c);
}
if (!SKIP.has("redis")) {
  await benchRedis(rows);
  await benchBehindHttp(rows, "redis");
}

const seated = rows.find((r) => r.scenario.startsWith("breakwater seated") && r.concurrency === C);
console.log("\n| scenario | buyers | places held | seconds | holds/s | p99 ms | vs Breakwater seated |");
console.log("|---|---:|---:|---:|---:|---:|---:|");
for (const r of rows)
  console.log(
    `| ${r.scenario} | ${r.concurrency} | ${r.held} | ${r.seconds.toFixed(2)} | ${r.perSecond.toFixed(0)} | ${r.p99.toFixed(0)} | ${seated ? (r.perSecond / seated.perSecond).toFixed(2) : "-"}× |`,
  );
/** Each scenario's saturation run: its highest holds/s over the steps whose p99 stays within 1 s. */
const saturation: Record<string, { concurrency: number; perSecond: number; p99: number }> = {};
for (const r of rows)
  if (r.p99 <= SATURATION_P99_MS && r.perSecond > (saturation[r.scenario]?.perSecond ?? 0))
    saturation[r.scenario] = { concurrency: r.concurrency, perSecond: r.perSecond, p99: r.p99 };
const pgHttp = saturation["postgres behind Node HTTP"];
if (pgHttp) {
  console.log(
    `\nAt saturation (steps ${STEPS.join(", ")}, p99 <= ${SATURATION_P99_MS} ms), ÷ PostgreSQL behind HTTP (${pgHttp.perSecond.toFixed(0)} holds/s, ${pgHttp.concurrency} buyers):`,
  );
  for (const [scenario, s] of Object.entries(saturation))
    if (scenario.startsWith("breakwater"))
      console.log(
        `  ${scenario}: ${s.perSecond.toFixed(0)} holds/s (${s.concurrency} buyers, p99 ${s.p99.toFixed(0)} ms): ${(s.perSecond / pgHttp.perSecond).toFixed(2)}×`,
      );
}
const file = writeResults("holds", { ...runInfo(), seats: SEATS, concurrency: C, saturationSteps: STEPS, saturation, rows });
console.log(`\nwrote ${file}`);

/**
 * bench/spike: a flash-sale spike against the waiting room. A burst of JOINS joins (many times the
 * admission rate) hits the edge as fast as CONCURRENCY connections allow; every buyer then polls when
 * the server says (`pollAfterSeconds`, jittered) and, once admitted, places one hold with its pass. The
 * run shows that the edge absorbs the burst (joins/s, p99 of join and poll, no 5xx), that the inventory
 * only sees the admitted flow (holds/s follows admissions/s, never above the ceiling), and how many
 * WaitingRoom DO calls a joined buyer costs (from /metrics: one coalesced sync per isolate per second).
 *
 * Path: HTTP over loopback → workerd via miniflare with unsafeDirectSockets (no dev proxy) → edge (signs
 * tickets, reads the room through its micro-cache) → WaitingRoom DO (alarm every second) → Inventory DOs.
 * Rate limits off (they would throttle the benchmark's single address), request logs off.
 *
 * Env: JOINS (2000, ≤ 20000), CONCURRENCY (64, ≤ 256), ADMIT_PER_MINUTE (1200), RUN_SECONDS (40, ≤ 120),
 * OPEN_AFTER_SECONDS (0: the sale is open; > 0: the burst is a pre-queue shuffled at the opening), PORT (8798).
 */
import os from "node:os";
import { counter, percentile, startBreakwater } from "./lib/breakwater-process.ts";
import { envInt } from "./lib/options.ts";
import { runInfo, writeResults } from "./lib/results.ts";
import { spearman } from "./lib/spearman.ts";

const JOINS = envInt("JOINS", 2_000, 1, 20_000);
const CONCURRENCY = envInt("CONCURRENCY", 64, 1, 256);
const ADMIT_PER_MINUTE = envInt("ADMIT_PER_MINUTE", 1_200, 1, 1_000_000);
const RUN_SECONDS = envInt("RUN_SECONDS", 40, 5, 120);
const OPEN_AFTER_SECONDS = envInt("OPEN_AFTER_SECONDS", 0, 0, 60);
const PORT = envInt("PORT", 8798, 1_024, 65_535);

interface QueueBody {
  ticket: string;
  state: "waiting" | "admitted";
  position: number;
  estimatedWaitSeconds: number;
  pass?: string;
  soldOut?: boolean;
  pollAfterSeconds: number;
}

/** Per-buyer record. */
interface Buyer {
  index: number;
  token: string;
  ticket?: string;
  joinedAt?: number;
  admittedAt?: number;
  heldAt?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `task(i)` for i in [0, n) with at most `c` in flight. */
async function pool(n: number, c: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(c, n) }, async () => {
      for (let i = next++; i < n; i = next++) await task(i);
    }),
  );
}

/** Counts per window of `width` ms from `t0`. */
function perWindow(times: number[], t0: number, width: number, until: number): number[] {
  const bins = new Array<number>(Math.max(1, Math.ceil((until - t0) / width))).fill(0);
  for (const t of times) {
    const b = Math.floor((t - t0) / width);
    if (b >= 0 && b < bins.length) bins[b] = (bins[b] as number) + 1;
  }
  return bins;
}

const bw = await startBreakwater(PORT, {}, 256);
if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(bw.base)) throw new Error(`refusing a non-loopback target: ${bw.base}`);
const deadline = Date.now() + (RUN_SECONDS + 300) * 1_000; // hard stop: setup + run, bounded
try {
  console.log(
    `bench/spike: ${JOINS} joins in a burst (${CONCURRENCY} connections), ceiling ${ADMIT_PER_MINUTE}/min, ${RUN_SECONDS} s of polling, ` +
      `${OPEN_AFTER_SECONDS ? `sale opens ${OPEN_AFTER_SECONDS} s after the burst starts (pre-queue)` : "sale already open"}, ${os.cpus().length} cores`,
  );
  const organizer = await bw.token("spike-org", "organizer");
  const admin = await bw.token("spike-admin", "admin");
  const buyers: Buyer[] = new Array(JOINS);
  await pool(JOINS, 32, async (i) => {
    buyers[i] = { index: i, token: await bw.token(`spike-buyer-${i}`, "buyer") };
  });
  const now = Date.now();
  const created = await bw.request(
    "POST",
    "/v1/events",
    {
      name: "Bench spike",
      venue: "Loopback",
      startsAt: new Date(now + 86_400_000).toISOString(),
      saleStartsAt: new Date(OPEN_AFTER_SECONDS ? now + OPEN_AFTER_SECONDS * 1_000 : now - 60_000).toISOString(),
      currency: "EUR",
      perCustomerLimit: 4,
      waitingRoom: { enabled: true, admitPerMinute: ADMIT_PER_MINUTE },
      sections: [{ id: "ga", name: "GA", kind: "ga", price: 4500, capacity: JOINS * 2, shards: 4 }],
    },
    organizer,
  );
  if (created.status !== 201) throw new Error(`create event ${created.status} ${created.body}`);
  const eventId = (JSON.parse(created.body) as { event: { id: string } }).event.id;
  let networkErrors = 0;
  /** A request that counts a dropped connection instead of crashing the run (the server is a shared machine's process). */
  const send = async (...args: Parameters<typeof bw.request>) => {
    try {
      return await bw.request(...args);
    } catch (err) {
      if (networkErrors++ === 0) console.error(`  network error: ${String(err)}`);
      if (networkErrors > 100) throw new Error(`the server stopped answering (${networkErrors} network errors)`);
      return { status: 0, body: String(err) };
    }
  };
  const metricsText = async () => (await bw.request("GET", "/metrics", undefined, admin)).body;
  const before = await metricsText();

  let fiveXx = 0;
  const otherErrors = new Map<string, number>();
  const noteError = (what: string, status: number, body: string) => {
    if (status >= 500) fiveXx++;
    const key = `${what} ${status}`;
    if (!otherErrors.has(key)) console.error(`  ${key}: ${body.slice(0, 200)}`);
    otherErrors.set(key, (otherErrors.get(key) ?? 0) + 1);
  };

  // ── the burst ──
  const joinLatencies: number[] = [];
  const firstPoll = new Map<number, number>();
  const t0 = Date.now();
  await pool(JOINS, CONCURRENCY, async (i) => {
    const b = buyers[i] as Buyer;
    const s = performance.now();
    const r = await send("POST", `/v1/events/${eventId}/queue`, undefined, b.token);
    joinLatencies.push(performance.now() - s);
    if (r.status !== 202) return noteError("join", r.status, r.body);
    const body = JSON.parse(r.body) as QueueBody;
    b.ticket = body.ticket;
    b.joinedAt = Date.now();
    firstPoll.set(i, body.pollAfterSeconds);
  });
  const burstSeconds = (Date.now() - t0) / 1_000;
  console.log(`  burst: ${JOINS} joins in ${burstSeconds.toFixed(2)} s = ${(JOINS / burstSeconds).toFixed(0)} joins/s at the edge`);

  // ── polling and holding ──
  const pollLatencies: number[] = [];
  const holdLatencies: number[] = [];
  let soldOutSeen = false;
  const stopAt = t0 + RUN_SECONDS * 1_000;
  const jitter = (s: number) => s * 1_000 * (0.8 + Math.random() * 0.4);
  await Promise.all(
    buyers.map(async (b) => {
      if (!b.ticket) return;
      let wait = jitter(firstPoll.get(b.index) ?? 2);
      for (;;) {
        if (Date.now() + wait >= stopAt || Date.now() > deadline) return;
        await sleep(wait);
        const s = performance.now();
        const r = await send("GET", `/v1/events/${eventId}/queue`, undefined, b.token, { "X-Queue-Ticket": b.ticket });
        pollLatencies.push(performance.now() - s);
        if (r.status !== 200) {
          noteError("poll", r.status, r.body);
          wait = jitter(2);
          continue;
        }
        const body = JSON.parse(r.body) as QueueBody;
        if (body.soldOut) soldOutSeen = true;
        if (body.state === "admitted" && body.pass) {
          b.admittedAt = Date.now();
          const hs = performance.now();
          const h = await send("POST", `/v1/events/${eventId}/holds`, { sectionId: "ga", quantity: 1 }, b.token, {
            "X-Queue-Pass": body.pass,
          });
          holdLatencies.push(performance.now() - hs);
          if (h.status === 201) b.heldAt = Date.now();
          else noteError("hold", h.status, h.body);
          return;
        }
        wait = jitter(body.pollAfterSeconds);
      }
    }),
  );
  const after = await metricsText();
  const end = Date.now();

  // ── figures ──
  joinLatencies.sort((a, b) => a - b);
  pollLatencies.sort((a, b) => a - b);
  holdLatencies.sort((a, b) => a - b);
  const admitted = buyers.filter((b) => b.admittedAt !== undefined);
  const held = buyers.filter((b) => b.heldAt !== undefined);
  const firstAdmission = Math.min(...admitted.map((b) => b.admittedAt as number));
  const window = 5_000;
  const admissionsPerWindow = admitted.length
    ? perWindow(
        admitted.map((b) => b.admittedAt as number),
        firstAdmission,
        window,
        end,
      )
    : [];
  const holdsPerWindow = held.length
    ? perWindow(
        held.map((b) => b.heldAt as number),
        firstAdmission,
        window,
        end,
      )
    : [];
  const roomCalls =
    counter(after, "breakwater_waiting_room_do_calls_total", { method: "sync" }) -
    counter(before, "breakwater_waiting_room_do_calls_total", { method: "sync" });
  const holdAttempts = counter(after, "breakwater_holds_total") - counter(before, "breakwater_holds_total");
  const admittedSpan = admitted.length > 1 ? (end - firstAdmission) / 1_000 : Number.NaN;
  const ceilingPerSecond = ADMIT_PER_MINUTE / 60;
  const orderCorrelation = spearman(
    admitted.map((b) => b.index),
    admitted.map((b) => b.admittedAt as number),
  );

  const result = {
    ...runInfo(),
    joins: JOINS,
    concurrency: CONCURRENCY,
    admitPerMinute: ADMIT_PER_MINUTE,
    openAfterSeconds: OPEN_AFTER_SECONDS,
    runSeconds: RUN_SECONDS,
    burstSeconds,
    joinsPerSecond: JOINS / burstSeconds,
    join: { p50: percentile(joinLatencies, 50), p99: percentile(joinLatencies, 99), max: joinLatencies.at(-1) ?? 0 },
    polls: pollLatencies.length,
    poll: { p50: percentile(pollLatencies, 50), p99: percentile(pollLatencies, 99), max: pollLatencies.at(-1) ?? 0 },
    hold: { p50: percentile(holdLatencies, 50), p99: percentile(holdLatencies, 99) },
    admitted: admitted.length,
    held: held.length,
    holdAttemptsAtInventory: holdAttempts,
    admittedPerSecond: admitted.length / admittedSpan,
    ceilingPerSecond,
    admissionsPer5s: admissionsPerWindow,
    holdsPer5s: holdsPerWindow,
    maxHoldsPerSecondIn5sWindow: Math.max(0, ...holdsPerWindow) / (window / 1_000),
    waitingRoomDoCalls: roomCalls,
    waitingRoomDoCallsPerJoinedBuyer: roomCalls / JOINS,
    waitingRoomDoCallsPerSecond: roomCalls / ((end - t0) / 1_000),
    admissionOrderVsJoinOrder: orderCorrelation,
    fiveXx,
    networkErrors,
    errors: Object.fromEntries(otherErrors),
    soldOutSeen,
  };

  const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "–");
  console.log(
    `  polls: ${result.polls} (p50 ${f(result.poll.p50)} ms, p99 ${f(result.poll.p99)} ms); joins p50 ${f(result.join.p50)} ms, p99 ${f(result.join.p99)} ms`,
  );
  console.log(
    `  admitted ${admitted.length} in ${f(admittedSpan)} s = ${f(result.admittedPerSecond)}/s (ceiling ${f(ceilingPerSecond)}/s); ` +
      `holds ${held.length} (inventory saw ${holdAttempts} attempts), at most ${f(result.maxHoldsPerSecondIn5sWindow)}/s over any 5-s window`,
  );
  console.log(`  admissions per 5 s: ${admissionsPerWindow.join(" ")}`);
  console.log(`  holds per 5 s:      ${holdsPerWindow.join(" ")}`);
  console.log(
    `  WaitingRoom DO calls: ${roomCalls} for ${JOINS} joins and ${result.polls} polls = ${f(result.waitingRoomDoCallsPerJoinedBuyer, 4)} per joined buyer ` +
      `(${f(result.waitingRoomDoCallsPerSecond, 2)}/s: one isolate here)`,
  );
  console.log(
    `  admission order vs join order (Spearman): ${f(orderCorrelation, 2)}; 5xx: ${fiveXx}; network errors: ${networkErrors}; other errors: ${JSON.stringify(result.errors)}`,
  );
  console.log(
    "\n| joins | joins/s (edge) | join p99 ms | polls | poll p99 ms | admitted/s | ceiling/s | max holds/s (5 s) | DO calls / joined buyer | 5xx |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  console.log(
    `| ${JOINS} | ${f(result.joinsPerSecond, 0)} | ${f(result.join.p99)} | ${result.polls} | ${f(result.poll.p99)} | ${f(result.admittedPerSecond)} | ${f(ceilingPerSecond)} | ${f(result.maxHoldsPerSecondIn5sWindow)} | ${f(result.waitingRoomDoCallsPerJoinedBuyer, 4)} | ${fiveXx} |`,
  );
  console.log(`wrote ${writeResults("spike", result, OPEN_AFTER_SECONDS ? { variant: "presale" } : {})}`);
  if (fiveXx > 0 || networkErrors > 0) process.exitCode = 1;
} finally {
  await bw.stop();
}

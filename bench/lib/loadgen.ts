/**
 * An open-model HTTP load generator (the shape of wrk2 / k6's constant-arrival-rate executor).
 *
 * Request `i` is *scheduled* at `start + i / rate`, on a clock that does not wait for responses: a slow
 * server gets more requests in flight, not fewer. Latency is measured from each request's scheduled send
 * time, so a stall on the server (or in the client's connection queue) shows up in the percentiles instead
 * of being hidden by the generator waiting for it (no coordinated omission). The generator's own lateness
 * (actual send − scheduled send) is reported separately as `sendLag`, so a saturated generator can be told
 * apart from a saturated server.
 *
 * HTTP/1.1 over an undici `Pool` with keep-alive connections (no pipelining). A request that finds every
 * connection busy waits in the pool's queue, and that wait counts in its latency.
 *
 * Bounded: at most {@link LIMITS}.maxRequests per run, `durationSec` ≤ {@link LIMITS}.maxDurationSec, a
 * per-request timeout, a cap on requests in flight (beyond it a request is dropped and counted as an
 * error), and a drain deadline after the last send. Loopback targets only.
 */
import { type Dispatcher, Pool } from "undici";

/** Hard limits of one run. */
const LIMITS = { maxRate: 200_000, maxDurationSec: 600, maxRequests: 10_000_000 } as const;

/** What request `i` sends besides its URL. */
interface RequestSpec {
  method?: Dispatcher.HttpMethod;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** Absolute URL of request `i` (loopback only), e.g. `http://127.0.0.1:8787/v1/events/evt_…`. */
  url: (i: number) => string;
  /** Offered arrival rate (requests per second), independent of responses. */
  rate: number;
  /** How long requests are scheduled for and measured (seconds). */
  durationSec: number;
  /**
   * Seconds at the same rate before the measured part (default 0): opens connections and warms the JIT
   * and caches. Those requests are sent but left out of every figure.
   */
  warmupSec?: number;
  /** Method, headers and body of request `i`; default a bare GET. */
  request?: (i: number) => RequestSpec;
  /** Keep-alive connections per origin (default 128): enough that the pool is not the bottleneck. */
  connections?: number;
  /** Per-request timeout for headers and body (ms, default 10 000); a timeout counts as a network error. */
  timeoutMs?: number;
  /** Requests allowed in flight before new ones are dropped as errors (default 50 000). */
  maxInFlight?: number;
  /** After the last send, how long to wait for responses before giving up on them (ms, default timeoutMs + 1000). */
  drainMs?: number;
  /**
   * Send timing. false (default): a 1 ms timer sends every request that has come due, in a batch, so the
   * generator sleeps between batches (it shares the machine with the server); up to ~1 ms of timer
   * lateness then counts in latency. true: re-check on every event-loop turn (setImmediate), which is more
   * precise but keeps one core busy.
   */
  precise?: boolean;
  /** Called with every response status (e.g. to check bodies elsewhere); keep it cheap. */
  onStatus?: (status: number, i: number) => void;
}

/** Latency distribution in milliseconds. */
interface Latency {
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Result of one run. Latencies are in ms from the scheduled send time; `throughput` counts successes per second. */
export interface LoadResult {
  /** Offered rate and how long the schedule lasted. */
  rate: number;
  durationSec: number;
  /** Requests the schedule called for. */
  scheduled: number;
  /** Measured requests handed to the connection pool. */
  sent: number;
  /** Requests handed to the pool including the warm-up (what the server handled during the whole call). */
  sentWithWarmup: number;
  /** Requests that got a complete response (any status). */
  completed: number;
  /** Completed with a status below 400. */
  ok: number;
  /** Failures: by HTTP status (≥ 400), by network error code, and requests dropped at the in-flight cap. */
  errors: { total: number; byStatus: Record<string, number>; network: Record<string, number>; dropped: number };
  /** Every status seen, counted. */
  statuses: Record<string, number>;
  /** Successful responses per second, from the first scheduled send to the last response. */
  throughput: number;
  /** Seconds from the first scheduled send to the last response (or the drain deadline). */
  elapsedSec: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** The full latency distribution of completed requests. */
  latency: Latency;
  /** How late the generator sent requests (ms): a large p99 here means the generator, not the server, fell behind. */
  sendLag: Latency;
  /** Most requests in flight at once. */
  maxInFlight: number;
  /** CPU the generator's process used during the run, as a share of one core (1 = 100 %). */
  generatorCpu: number;
  /** Generator CPU time per measured request (µs): 1e6 / this is its single-core ceiling. */
  generatorCpuUsPerRequest: number;
  /**
   * True when the generator fell behind its own schedule (send lag p99 > 5 ms) or used ≥ 95 % of a core.
   * With low generator CPU, a lag means the machine did not schedule the generator (other work), not that
   * the generator ran out of capacity; either way the step's figures include that lateness.
   */
  generatorBehind: boolean;
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])$/;

/** Throws unless `url` is http(s) on a loopback address: this generator never points at anything else. */
function assertLoopback(url: string): URL {
  const u = new URL(url);
  if ((u.protocol !== "http:" && u.protocol !== "https:") || !LOOPBACK.test(u.hostname))
    throw new Error(`loadgen: only loopback targets are allowed, not ${u.origin}`);
  return u;
}

/** Latency summary of the first `n` values of `values` (sorted in place). */
function summarize(values: Float64Array, n: number): Latency {
  if (n === 0) return { p50: 0, p90: 0, p95: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  const sorted = values.subarray(0, n).sort();
  const at = (p: number) => sorted[Math.min(n - 1, Math.floor(p * n))] ?? 0;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i] ?? 0;
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return {
    p50: r(at(0.5)),
    p90: r(at(0.9)),
    p95: r(at(0.95)),
    p99: r(at(0.99)),
    p999: r(at(0.999)),
    max: r(sorted[n - 1] ?? 0),
    mean: r(sum / n),
  };
}

const bump = (m: Record<string, number>, k: string) => {
  m[k] = (m[k] ?? 0) + 1;
};

/**
 * Runs one fixed-rate load and resolves when every request has answered or the drain deadline passed.
 * The pool is created for the run and destroyed after it.
 */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const { rate, durationSec } = opts;
  if (!(rate > 0 && rate <= LIMITS.maxRate)) throw new Error(`loadgen: rate must be in (0, ${LIMITS.maxRate}]`);
  if (!(durationSec > 0 && durationSec <= LIMITS.maxDurationSec))
    throw new Error(`loadgen: durationSec must be in (0, ${LIMITS.maxDurationSec}]`);
  const warmup = Math.round(rate * (opts.warmupSec ?? 0));
  const total = warmup + Math.round(rate * durationSec);
  if (total > LIMITS.maxRequests) throw new Error(`loadgen: ${total} requests is more than ${LIMITS.maxRequests}`);
  const connections = opts.connections ?? 128;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxInFlight = opts.maxInFlight ?? 50_000;
  const drainMs = opts.drainMs ?? timeoutMs + 1_000;
  const interval = 1000 / rate;

  const pools = new Map<string, Pool>();
  let lastOrigin = "";
  let lastPool: Pool | undefined;
  const poolFor = (url: string): { pool: Pool; path: string } => {
    if (lastPool && url.startsWith(lastOrigin) && url.charCodeAt(lastOrigin.length) === 47 /* "/" */)
      return { pool: lastPool, path: url.slice(lastOrigin.length) };
    const u = assertLoopback(url);
    let pool = pools.get(u.origin);
    if (!pool) {
      pool = new Pool(u.origin, {
        connections,
        pipelining: 1,
        keepAliveTimeout: 60_000,
        keepAliveMaxTimeout: 600_000,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      pools.set(u.origin, pool);
    }
    lastOrigin = u.origin;
    lastPool = pool;
    return { pool, path: u.pathname + u.search };
  };

  const latencies = new Float64Array(total - warmup);
  const lags = new Float64Array(total - warmup);
  let nLat = 0;
  let sent = 0;
  let sentAll = 0;
  let completed = 0;
  let ok = 0;
  let dropped = 0;
  let inFlight = 0;
  let peak = 0;
  let lastDone = 0;
  const statuses: Record<string, number> = {};
  const byStatus: Record<string, number> = {};
  const network: Record<string, number> = {};
  let wake: (() => void) | undefined;
  /** Set at the drain deadline: what answers after it was already counted as abandoned. */
  let closed = false;

  let cpu0 = process.cpuUsage();
  const start = performance.now() + 5;
  /** Start of the measured part. */
  const t0 = start + warmup * interval;
  const finish = (measured: boolean) => {
    inFlight--;
    if (measured) lastDone = performance.now();
    if (inFlight === 0 && sentAll === total) wake?.();
  };

  /** One request's handler: status on headers, latency on the end, network errors by code. */
  class Handler implements Dispatcher.DispatchHandler {
    status = 0;
    readonly i: number;
    readonly scheduledAt: number;
    constructor(i: number, scheduledAt: number) {
      this.i = i;
      this.scheduledAt = scheduledAt;
    }
    onRequestStart(): void {}
    onResponseStart(_c: Dispatcher.DispatchController, statusCode: number): void {
      this.status = statusCode;
    }
    onResponseData(): void {}
    onResponseEnd(): void {
      if (closed) return;
      if (this.i < warmup) {
        finish(false);
        return;
      }
      latencies[nLat++] = performance.now() - this.scheduledAt;
      completed++;
      bump(statuses, String(this.status));
      if (this.status < 400) ok++;
      else bump(byStatus, String(this.status));
      opts.onStatus?.(this.status, this.i);
      finish(true);
    }
    onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
      if (closed) return;
      if (this.i < warmup) {
        finish(false);
        return;
      }
      bump(network, (err as { code?: string }).code ?? err.name);
      finish(true);
    }
  }

  const send = (i: number, scheduledAt: number, now: number) => {
    sentAll++;
    const measured = i >= warmup;
    if (inFlight >= maxInFlight) {
      if (measured) dropped++;
      return;
    }
    const { pool, path } = poolFor(opts.url(i));
    const spec = opts.request?.(i);
    if (measured) {
      if (i === warmup) cpu0 = process.cpuUsage();
      lags[sent++] = now - scheduledAt;
    }
    inFlight++;
    if (inFlight > peak) peak = inFlight;
    pool.dispatch(
      { path, method: spec?.method ?? "GET", headers: spec?.headers ?? null, body: spec?.body ?? null },
      new Handler(i, scheduledAt),
    );
  };

  await new Promise<void>((resolve) => {
    let next = 0;
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - start) / interval) + 1);
      while (next < due) {
        send(next, start + next * interval, now);
        next++;
      }
      if (next < total) {
        // Sleep until the next request is due (1 ms timer resolution; a late timer shows up as send lag).
        const wait = start + next * interval - performance.now();
        if (opts.precise && wait < 1) setImmediate(tick);
        else setTimeout(tick, Math.max(0, Math.min(wait, 50)));
      } else resolve();
    };
    setTimeout(tick, 5);
  });
  const cpu = process.cpuUsage(cpu0);
  const scheduleEnd = performance.now();

  if (inFlight > 0) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, drainMs);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
  closed = true;
  if (inFlight > 0) network.abandoned_at_drain_deadline = inFlight;
  await Promise.all([...pools.values()].map((p) => p.destroy()));

  const end = Math.max(lastDone, t0 + durationSec * 1000);
  const elapsedSec = (end - t0) / 1000;
  const latency = summarize(latencies, nLat);
  const sendLag = summarize(lags, sent);
  const generatorCpu = (cpu.user + cpu.system) / 1000 / (scheduleEnd - t0);
  const networkTotal = Object.values(network).reduce((a, b) => a + b, 0);
  const statusErrors = Object.values(byStatus).reduce((a, b) => a + b, 0);
  return {
    rate,
    durationSec,
    scheduled: total - warmup,
    sent,
    sentWithWarmup: sentAll - dropped,
    completed,
    ok,
    errors: { total: statusErrors + networkTotal + dropped, byStatus, network, dropped },
    statuses,
    throughput: ok / elapsedSec,
    elapsedSec,
    p50: latency.p50,
    p95: latency.p95,
    p99: latency.p99,
    max: latency.max,
    latency,
    sendLag,
    maxInFlight: peak,
    generatorCpu,
    generatorCpuUsPerRequest: sent ? (cpu.user + cpu.system) / sent : 0,
    generatorBehind: sendLag.p99 > 5 || generatorCpu >= 0.95,
  };
}

/** When a rate counts as sustained. */
export interface Sustainable {
  /** Achieved throughput at least this share of the offered rate (default 0.97). */
  minAchieved?: number;
  /** p99 latency bound in ms (default 50). */
  p99Ms?: number;
}

/** True when `r` met the offered rate with no errors and a p99 under the bound. */
export function isSustained(r: LoadResult, s: Sustainable = {}): boolean {
  return r.errors.total === 0 && r.throughput >= (s.minAchieved ?? 0.97) * r.rate && r.p99 <= (s.p99Ms ?? 50);
}

/** Options of {@link findMaxRate}. */
export interface StepOptions extends Sustainable {
  /** Explicit offered rates to try in order (stops at the first failure); overrides the search below. */
  rates?: number[];
  /** First rate of the search (req/s). */
  start: number;
  /** Multiplier between steps while they pass (default 1.3). */
  factor?: number;
  /** Halvings of the gap between the last pass and the first failure (default 2). */
  refine?: number;
  /** When the first step fails, how many steps down (÷ factor) to try before giving up (default 4). */
  maxDownSteps?: number;
  /** Never offer more than this (default LIMITS.maxRate). */
  maxRate?: number;
  /** Pause between steps so the server drains its backlog (ms, default 1000). */
  pauseMs?: number;
  /** Called after each step. */
  onStep?: (r: LoadResult, sustained: boolean) => void;
}

/**
 * Steps the offered rate to find the highest one `run` sustains: up by `factor` while steps pass (down
 * while they fail, if the first one did), then bisects between the last pass and the first failure
 * `refine` times. Returns every step and the best
 * sustained one (undefined if even the first failed).
 */
export async function findMaxRate(
  run: (rate: number) => Promise<LoadResult>,
  opts: StepOptions,
): Promise<{ steps: LoadResult[]; best: LoadResult | undefined }> {
  const steps: LoadResult[] = [];
  let best: LoadResult | undefined;
  const pause = () => new Promise((r) => setTimeout(r, opts.pauseMs ?? 1_000));
  const attempt = async (rate: number): Promise<boolean> => {
    const r = await run(Math.round(rate));
    const ok = isSustained(r, opts);
    steps.push(r);
    if (ok && (!best || r.rate > best.rate)) best = r;
    opts.onStep?.(r, ok);
    await pause();
    return ok;
  };
  if (opts.rates?.length) {
    for (const rate of opts.rates) if (!(await attempt(rate))) break;
    return { steps, best };
  }
  const cap = opts.maxRate ?? LIMITS.maxRate;
  const factor = opts.factor ?? 1.3;
  let lo = 0;
  let hi = 0;
  let rate = Math.min(cap, opts.start);
  if (await attempt(rate)) {
    lo = rate;
    while (rate < cap) {
      rate = Math.min(cap, rate * factor);
      if (!(await attempt(rate))) {
        hi = rate;
        break;
      }
      lo = rate;
    }
    if (hi === 0) return { steps, best };
  } else {
    // The first step already failed: step down until one passes.
    hi = rate;
    for (let k = 0; k < (opts.maxDownSteps ?? 4) && lo === 0; k++) {
      rate /= factor;
      if (await attempt(rate)) lo = rate;
      else hi = rate;
    }
  }
  for (let k = 0; k < (opts.refine ?? 2) && lo > 0; k++) {
    const mid = (lo + hi) / 2;
    if (await attempt(mid)) lo = mid;
    else hi = mid;
  }
  return { steps, best };
}

/** One line per step for the console. */
export function formatStep(label: string, r: LoadResult, sustained: boolean): string {
  const detail = { ...r.errors.byStatus, ...r.errors.network, ...(r.errors.dropped ? { dropped: r.errors.dropped } : {}) };
  const errs = r.errors.total ? ` errors=${r.errors.total} ${JSON.stringify(detail)}` : "";
  const gen = r.generatorBehind ? " [generator behind schedule]" : "";
  return (
    `  ${label.padEnd(12)} offered ${String(r.rate).padStart(6)}/s → ${r.throughput.toFixed(0).padStart(6)}/s` +
    `  p50 ${r.p50.toFixed(2)}  p95 ${r.p95.toFixed(2)}  p99 ${r.p99.toFixed(2)}  max ${r.max.toFixed(1)} ms` +
    `  lag p99 ${r.sendLag.p99.toFixed(2)} ms  gen cpu ${(r.generatorCpu * 100).toFixed(0)}%${errs}${gen}  ${sustained ? "ok" : "NOT sustained"}`
  );
}

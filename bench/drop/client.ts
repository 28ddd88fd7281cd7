/**
 * The drop's HTTP client: keep-alive connections to one origin (undici Pool), at most `maxInFlight`
 * requests on the wire (the others wait their turn on the client, and that wait is recorded apart from
 * the request's latency; an admitted buyer's requests, `urgent`, go before those of buyers still
 * reading or queueing: with one queue, thousands of waiting-room polls would hold a buyer's payment back
 * past its hold's expiry, which no real buyer's browser would do), a timeout per request (undici's own header and body timers: no timer
 * of ours per request), and every request recorded in the history with its answer (status, problem code,
 * X-Request-Id, Retry-After, what the body said) or its error (timeout, connection refused or reset).
 * Bodies the buyer does not read are drained unparsed.
 */
import { type Dispatcher, Pool } from "undici";
import type { Recorder, RequestRecord, Seen, Step } from "./history.ts";

/** A request to send. */
export interface Send {
  buyer: string;
  step: Step;
  attempt?: number;
  method: Dispatcher.HttpMethod;
  path: string;
  token?: string;
  json?: unknown;
  headers?: Record<string, string>;
  idempotencyKey?: string;
  /** The payment token of a pay request (recorded). */
  payToken?: string;
  /** What the answer's body says, for the history. */
  seen?: (body: Record<string, unknown>) => Seen | undefined;
  /** The buyer ignores the body: drain it unparsed (the event document, a seat map only looked at). */
  discardBody?: boolean;
  /** An admitted buyer's request (seat map, hold, pay, order): first in line for a slot. */
  urgent?: boolean;
}

/** A recorded request and its parsed body (2xx only). */
export interface Sent<T = Record<string, unknown>> {
  rec: RequestRecord;
  body?: T;
}

/** Live figures for the progress line. */
export interface LiveCounts {
  requests: number;
  errors: number;
  /** Requests on the wire now, and waiting for a slot on the client. */
  inFlight: number;
  queued: number;
  /** Latencies of requests that ended since the last read (ms). */
  latencies: number[];
}

/** What an error says, in one short phrase. */
function errorName(err: unknown): string {
  const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code ?? "";
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT" || e.name === "TimeoutError") return "timeout";
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ECONNRESET" || code === "UND_ERR_SOCKET" || code === "EPIPE") return "connection reset";
  if (code === "UND_ERR_CLOSED" || code === "UND_ERR_DESTROYED") return "client closed";
  return `${code || e.name || "error"}: ${String(e.message ?? err).slice(0, 120)}`;
}

/** A queue with O(1) shift (a head index, compacted now and then). */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  push(v: T): void {
    this.items.push(v);
  }
  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const v = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 4_096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
}

/** One client per run. */
export class DropClient {
  private readonly pool: Pool;
  readonly live: LiveCounts = { requests: 0, errors: 0, inFlight: 0, queued: 0, latencies: [] };
  private readonly recorder: Recorder;
  private readonly opts: { connections: number; timeoutMs: number; maxInFlight: number };
  /** Senders waiting for a slot: urgent ones, then the others, each FIFO. */
  private readonly waiters = { urgent: new Fifo<() => void>(), other: new Fifo<() => void>() };
  constructor(base: string, recorder: Recorder, opts: { connections: number; timeoutMs: number; maxInFlight: number }) {
    this.recorder = recorder;
    this.opts = opts;
    this.pool = new Pool(base, {
      connections: opts.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connect: { timeout: 5_000 },
    });
  }

  /** A slot on the wire: at once while fewer than maxInFlight are out, else in FIFO order. */
  private acquire(urgent: boolean): Promise<void> | undefined {
    if (this.live.inFlight < this.opts.maxInFlight) {
      this.live.inFlight++;
      return undefined;
    }
    this.live.queued++;
    return new Promise<void>((resolve) => (urgent ? this.waiters.urgent : this.waiters.other).push(resolve));
  }
  /** Hands the slot to the next waiter (inFlight unchanged), or frees it. */
  private release(): void {
    const next = this.waiters.urgent.shift() ?? this.waiters.other.shift();
    if (next) {
      this.live.queued--;
      next();
    } else this.live.inFlight--;
  }

  /** Sends one request and records it; never throws for HTTP or network failures. */
  async send<T = Record<string, unknown>>(s: Send): Promise<Sent<T>> {
    const asked = this.recorder.now();
    const slot = this.acquire(s.urgent === true);
    if (slot) await slot;
    try {
      return await this.sendNow<T>(s, asked);
    } finally {
      this.release();
    }
  }

  private async sendNow<T>(s: Send, asked: number): Promise<Sent<T>> {
    const headers: Record<string, string> = { ...(s.headers ?? {}) };
    if (s.token) headers.authorization = `Bearer ${s.token}`;
    let body: string | undefined;
    if (s.json !== undefined) {
      body = JSON.stringify(s.json);
      headers["content-type"] = "application/json";
    }
    if (s.idempotencyKey) headers["idempotency-key"] = s.idempotencyKey;
    const start = this.recorder.now();
    const base = {
      buyer: s.buyer,
      step: s.step,
      method: s.method,
      path: s.path,
      attempt: s.attempt ?? 1,
      start,
      ...(start - asked >= 1 ? { wait: start - asked } : {}),
      ...(s.idempotencyKey ? { idempotencyKey: s.idempotencyKey } : {}),
      ...(s.payToken ? { token: s.payToken } : {}),
    };
    this.live.requests++;
    try {
      const res = await this.pool.request({
        path: s.path,
        method: s.method,
        headers,
        body,
      });
      const ok = res.statusCode < 300;
      let parsed: Record<string, unknown> | undefined;
      if (ok && s.discardBody) await res.body.dump({ limit: 16 * 1024 * 1024 });
      else {
        const text = await res.body.text();
        try {
          parsed = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
        } catch {
          parsed = undefined;
        }
      }
      const end = this.recorder.now();
      this.live.latencies.push(end - start);
      const h = (name: string) => {
        const v = res.headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
      const retryAfter = h("retry-after");
      if (!ok) this.live.errors++;
      const rec = this.recorder.request({
        ...base,
        end,
        status: res.statusCode,
        ...(!ok && typeof parsed?.code === "string" ? { code: parsed.code } : {}),
        ...(h("x-request-id") ? { requestId: h("x-request-id") } : {}),
        ...(retryAfter !== undefined && Number.isFinite(Number(retryAfter)) ? { retryAfter: Number(retryAfter) } : {}),
        ...(ok && parsed && s.seen ? { seen: s.seen(parsed) } : {}),
      });
      return { rec, body: ok ? (parsed as T | undefined) : undefined };
    } catch (err) {
      const end = this.recorder.now();
      this.live.errors++;
      this.live.latencies.push(end - start);
      return { rec: this.recorder.request({ ...base, end, error: errorName(err) }) };
    }
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}

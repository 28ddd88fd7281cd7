/**
 * The drop's HTTP client: keep-alive connections to one origin (undici Pool), a timeout per request, and
 * every request recorded in the history with its answer (status, problem code, X-Request-Id,
 * Retry-After, what the body said) or its error (timeout, connection refused or reset).
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

/** One client per run. */
export class DropClient {
  private readonly pool: Pool;
  readonly live: LiveCounts = { requests: 0, errors: 0, latencies: [] };
  private readonly recorder: Recorder;
  private readonly opts: { connections: number; timeoutMs: number };
  constructor(base: string, recorder: Recorder, opts: { connections: number; timeoutMs: number }) {
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

  /** Sends one request and records it; never throws for HTTP or network failures. */
  async send<T = Record<string, unknown>>(s: Send): Promise<Sent<T>> {
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
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      const text = await res.body.text();
      const end = this.recorder.now();
      this.live.latencies.push(end - start);
      let parsed: Record<string, unknown> | undefined;
      try {
        parsed = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
      } catch {
        parsed = undefined;
      }
      const h = (name: string) => {
        const v = res.headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
      const retryAfter = h("retry-after");
      const ok = res.statusCode < 300;
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

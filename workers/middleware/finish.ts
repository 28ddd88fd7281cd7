import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import { config } from "../../lib/config";
import { memoized, memoizedPerObject } from "../../lib/memoized";
import { metric } from "../../lib/metric-catalog";
import { metrics } from "../../lib/metrics";
import { recordSpan } from "../../lib/otel";
import type { TraceContext } from "../../lib/trace";
import type { AppEnv } from "../types";
import { requestSpan } from "./trace";

/**
 * Finishing an answer: what every answer of the Worker gets on its way out, whichever path built it — the
 * Hono app (the {@link finish} middleware, first in workers/app.ts) or the router-free catalog reads
 * (workers/cached-reads.ts, through {@link finisher}):
 * - `X-Request-Id`: the caller's when it is a plausible id, otherwise a new UUID;
 * - the security headers ({@link SECURITY_HEADERS}; HSTS over https only, `Referrer-Policy` on HTML);
 * - the request's record: the HTTP metrics, an Analytics Engine data point, the span (when an OTLP
 *   endpoint is set) and the JSON log line (when `REQUEST_LOG` wants it).
 * Both paths go through one {@link finisher}, so their answers and records cannot drift apart
 * (test/routes/cached-reads.test.ts holds them side by side).
 */

/** Options of {@link finish}. */
interface FinishOptions {
  /** Incoming header to take the request id from (a proxy's or the client's), if it looks like an id; `X-Request-Id` by default. */
  requestIdHeader?: string;
  /** Extra or overriding security headers. */
  headers?: Record<string, string>;
  /** Where log lines go; console.log by default (Workers Logs / `wrangler tail` collect it). */
  write?: (line: string) => void;
}

// ---- Request id -------------------------------------------------------------------------------------

const SAFE_ID = /^[A-Za-z0-9._-]{8,64}$/;

/** The id of a request: the caller's when it is a plausible id, otherwise a new UUID. */
export const requestIdFor = (incoming: string | null | undefined): string =>
  incoming && SAFE_ID.test(incoming) ? incoming : crypto.randomUUID();

// ---- Security headers -------------------------------------------------------------------------------

/**
 * The headers every answer carries (unless a route sets its own value); HSTS is added over https only.
 * They are OWASP's set for a JSON API (REST Security Cheat Sheet, "Security Headers"): `nosniff` so a
 * browser never reads an answer as anything but its `Content-Type`; `frame-ancestors 'none'` (and
 * `X-Frame-Options` for older browsers) so no answer can be framed; `default-src 'none'` so one rendered
 * by mistake runs and loads nothing. Every header costs the runtime work on every answer, so headers
 * that do nothing for JSON are not sent:
 * `Referrer-Policy` goes on pages only ({@link PAGE_HEADERS}), and `Cross-Origin-Resource-Policy` is not
 * sent (it guards answers loaded without CORS, which cannot carry the bearer token that private answers
 * need; public answers are public).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
};

/**
 * What HTML answers (`/docs`, the pages) carry besides: their links must not leak the page's URL. Pages
 * that need scripts set their own Content-Security-Policy, which the finish step keeps.
 */
const PAGE_HEADERS: Readonly<Record<string, string>> = { "Referrer-Policy": "no-referrer" };

/**
 * `Strict-Transport-Security` goes only on answers to https requests. RFC 6797 §7.2: a server must not
 * send HSTS over plain http (a browser ignores it there, and a local `http://127.0.0.1` answer would tell
 * it nothing true). In production every request is https.
 */
const HSTS = { "Strict-Transport-Security": "max-age=31536000; includeSubDomains" } as const;

/** Whether a request URL came over https. */
export const isSecure = (url: string): boolean => url.startsWith("https:");

// ---- The request's record ---------------------------------------------------------------------------

/** Parses REQUEST_LOG: "all", "errors", "off", or a sample rate in (0, 1]. */
export function logPolicy(value: string | undefined): (status: number) => boolean {
  if (!value || value === "all") return () => true;
  if (value === "off") return () => false;
  if (value === "errors") return (status) => status >= 400;
  const rate = Number(value);
  if (rate > 0 && rate <= 1) return (status) => status >= 500 || Math.random() < rate;
  return () => true;
}

/** What is known of one answered request, for its `X-Request-Id`, log line, metrics and span. */
interface RequestRecord {
  method: string;
  /** Route pattern (`/v1/events/:id`), or `unmatched`: never the raw path, so metric series stay bounded. */
  route: string;
  path: string;
  status: number;
  /** `performance.now()` when the request began; the duration is taken when the answer is finished. */
  started: number;
  requestId: string;
  trace: TraceContext | undefined;
  parentSpanId: string | undefined;
  /**
   * The router-free path (which leaves `trace` unset): the request's headers, whose `traceparent` the
   * request's span is made from only if the record is exported or logged — nothing else of its answer
   * needs it, so the header is not even read otherwise.
   */
  spanFrom?: Pick<Headers, "get">;
  cacheStatus: string | undefined;
  user: string | undefined;
}

/**
 * The request counter of a route, status and method; each series resolved once. The labels come from
 * closed sets: route patterns, status codes, and the methods workerd parses (it refuses any other).
 */
const requestsOf = memoized((route: string) =>
  memoized((status: number) => memoized((method: string) => metric.httpRequests.series({ method, route, status }))),
);
/** The request duration histogram of a route, resolved once. */
const durationOf = memoized((route: string) => metric.httpRequestDurationMs.series({ route }));

/** Bindings the finish step reads. */
type FinishEnv = Partial<Pick<Env, "METRICS_AE">>;
type WaitUntil = Pick<ExecutionContext, "waitUntil">;

/** Makes the span of a record that has only `spanFrom`, once (a no-op for records that came with theirs). */
function spanOf(env: FinishEnv, r: RequestRecord): void {
  if (r.spanFrom === undefined) return;
  const made = requestSpan(env, r.spanFrom.get("traceparent"));
  r.trace = made?.span;
  r.parentSpanId = made?.parentSpanId;
  r.spanFrom = undefined;
}

/** Milliseconds since `started` (a `performance.now()` reading), to two decimals. */
const elapsedMs = (started: number): number => Math.round((performance.now() - started) * 100) / 100;

/**
 * Accounts for one request: the request metrics, the Analytics Engine data point, the span (when an OTLP
 * endpoint is set) and the JSON log line (when `REQUEST_LOG` wants it).
 */
function requestRecorder(write: (line: string) => void) {
  let policyFor: string | undefined;
  let policy = logPolicy(undefined);
  return function record(env: FinishEnv, ctx: WaitUntil, r: RequestRecord): void {
    const { route, status } = r;
    const durationMs = elapsedMs(r.started);
    requestsOf(route)(status)(r.method).inc();
    durationOf(route).observe(durationMs);
    if (metrics.enabled)
      env.METRICS_AE?.writeDataPoint({
        indexes: [route],
        blobs: [route, r.method, String(status), r.cacheStatus ?? ""],
        doubles: [durationMs, 1],
      });
    const cfg = config(env);
    const otlp = cfg.OTEL_EXPORTER_OTLP_ENDPOINT;
    if (otlp) spanOf(env, r);
    if (otlp && r.trace) {
      const end = Date.now();
      const flush = recordSpan(otlp, {
        trace: r.trace,
        ...(r.parentSpanId ? { parentSpanId: r.parentSpanId } : {}),
        name: `${r.method} ${route}`,
        startMs: end - durationMs,
        endMs: end,
        attributes: {
          "http.request.method": r.method,
          "http.route": route,
          "http.response.status_code": status,
          "breakwater.request_id": r.requestId,
        },
        error: status >= 500,
      });
      if (flush) ctx.waitUntil(flush);
    }
    if (policyFor !== cfg.REQUEST_LOG) {
      policyFor = cfg.REQUEST_LOG;
      policy = logPolicy(policyFor);
    }
    if (!policy(status)) return;
    spanOf(env, r);
    write(
      JSON.stringify({
        level: status >= 500 ? "error" : status >= 400 ? "warn" : "info",
        msg: "request",
        requestId: r.requestId,
        traceId: r.trace?.traceId,
        method: r.method,
        route,
        path: r.path,
        status,
        durationMs,
        cache: r.cacheStatus,
        user: r.user,
      }),
    );
  };
}

// ---- The step -----------------------------------------------------------------------------------------

/** The finish step of one configuration; both paths of the Worker use the same one ({@link finisher}). */
function answerFinisher(opts: FinishOptions = {}) {
  const idHeader = opts.requestIdHeader ?? "X-Request-Id";
  const security = {
    plain: Object.entries({ ...SECURITY_HEADERS, ...opts.headers }),
    https: Object.entries({ ...SECURITY_HEADERS, ...HSTS, ...opts.headers }),
  };
  const pageHeaders = Object.entries(PAGE_HEADERS);
  const record = requestRecorder(opts.write ?? ((line) => console.log(line)));

  /** Adds the security headers an answer's headers lack (a route's own value wins), and the page headers to HTML. */
  function secure(h: Headers, https: boolean): void {
    for (const [k, v] of https ? security.https : security.plain) if (!h.has(k)) h.set(k, v);
    if (h.get("Content-Type")?.startsWith("text/html")) for (const [k, v] of pageHeaders) if (!h.has(k)) h.set(k, v);
  }

  /** Finishes an answer whose headers came from {@link prepared} (security headers in place): its request id, its record. */
  function finishPrepared(res: Response, env: FinishEnv, ctx: WaitUntil, r: RequestRecord): Response {
    res.headers.set("X-Request-Id", r.requestId);
    record(env, ctx, r);
    return res;
  }

  /**
   * The headers of answers that are the same for every request that gets them (a cached document's, by
   * `headersOf`), with the security headers already stamped: one `Headers` per key object and scheme,
   * built on its first answer and dropped with the key. The `Response` constructor copies a `Headers`
   * natively, where a plain object would be converted property by property on every request: on the
   * busiest path, work per request that does not depend on the request is done once. Answers built on
   * them are finished with {@link finishPrepared}.
   */
  function prepared<K extends object>(headersOf: (key: K) => Record<string, string>): (key: K, https: boolean) => Headers {
    const build = (https: boolean) =>
      memoizedPerObject((key: K) => {
        const h = new Headers(headersOf(key));
        secure(h, https);
        return h;
      });
    const [plain, overHttps] = [build(false), build(true)];
    return (key, https) => (https ? overHttps : plain)(key);
  }

  return {
    /** The id of the request with these headers ({@link requestIdFor}). */
    idOf: (headers: Pick<Headers, "get">): string => requestIdFor(headers.get(idHeader)),
    prepared,
    /** Finishes an answer a handler built: its missing security headers, its request id, its record. */
    finish(res: Response, https: boolean, env: FinishEnv, ctx: WaitUntil, r: RequestRecord): Response {
      secure(res.headers, https);
      return finishPrepared(res, env, ctx, r);
    },
    finishPrepared,
  };
}

/** The finish step of the Worker's answers: the app's {@link finish} middleware and the router-free catalog reads. */
export const finisher = answerFinisher();

/**
 * The app's first middleware: gives the request its id (on the context as `requestId`, so every later
 * line and problem document carries it), and once the answer is built — errors and unmatched routes
 * included — finishes it (the security headers it lacks, its `X-Request-Id`, its record). Options are for tests; the app uses
 * {@link finisher}, as the router-free path does.
 */
export const finish = (opts?: FinishOptions): MiddlewareHandler<AppEnv> => {
  const f = opts ? answerFinisher(opts) : finisher;
  return async function finish(c, next) {
    const started = performance.now();
    const requestId = f.idOf(c.req.raw.headers);
    c.set("requestId", requestId);
    await next();
    const matched = routePath(c);
    f.finish(
      c.res,
      isSecure(c.req.url),
      c.env,
      { waitUntil: (p) => c.executionCtx.waitUntil(p) },
      {
        method: c.req.method,
        route: !matched || matched === "/*" ? "unmatched" : matched,
        path: c.req.path,
        status: c.res.status,
        started,
        requestId,
        trace: c.get("trace"),
        parentSpanId: c.get("parentSpanId"),
        cacheStatus: c.get("cacheStatus"),
        user: c.get("principal")?.sub,
      },
    );
  };
};

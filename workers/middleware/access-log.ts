import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import { config } from "../../lib/config";
import { memoized } from "../../lib/memoized";
import { metric } from "../../lib/metric-catalog";
import { metrics } from "../../lib/metrics";
import { recordSpan } from "../../lib/otel";
import type { TraceContext } from "../../lib/trace";
import type { AppEnv } from "../types";
import { requestSpan } from "./trace";

/** Options of {@link accessLog}. */
export interface AccessLogOptions {
  /** Where lines go; console.log by default (Workers Logs / `wrangler tail` collect it). */
  write?: (line: string) => void;
}

/** Parses REQUEST_LOG: "all", "errors", "off", or a sample rate in (0, 1]. */
export function logPolicy(value: string | undefined): (status: number) => boolean {
  if (!value || value === "all") return () => true;
  if (value === "off") return () => false;
  if (value === "errors") return (status) => status >= 400;
  const rate = Number(value);
  if (rate > 0 && rate <= 1) return (status) => status >= 500 || Math.random() < rate;
  return () => true;
}

/** What is known of one answered request, for its log line, metrics and span. */
export interface RequestRecord {
  method: string;
  /** Route pattern (`/v1/events/:id`), or `unmatched`: never the raw path, so metric series stay bounded. */
  route: string;
  path: string;
  status: number;
  durationMs: number;
  requestId: string | undefined;
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

/** Bindings the request recorder reads. */
type RecorderEnv = Partial<Pick<Env, "METRICS_AE">>;

/** Makes the span of a record that has only `spanFrom`, once (a no-op for records that came with theirs). */
function spanOf(env: RecorderEnv, r: RequestRecord): void {
  if (r.spanFrom === undefined) return;
  const made = requestSpan(env, r.spanFrom.get("traceparent"));
  r.trace = made?.span;
  r.parentSpanId = made?.parentSpanId;
  r.spanFrom = undefined;
}

/**
 * Accounts for one request: the request metrics, the Analytics Engine data point, the span (when an OTLP
 * endpoint is set) and the JSON log line (when `REQUEST_LOG` wants it). Shared by the {@link accessLog}
 * middleware and the router-free path of cached reads (workers/cached-reads.ts), so both answer alike.
 */
export function requestRecorder(write: (line: string) => void = (line) => console.log(line)) {
  let policyFor: string | undefined;
  let policy = logPolicy(undefined);
  return function record(env: RecorderEnv, ctx: Pick<ExecutionContext, "waitUntil">, r: RequestRecord): void {
    const { route, status, durationMs } = r;
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
          "breakwater.request_id": r.requestId ?? "",
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

/** Milliseconds since `started` (a `performance.now()` reading), to two decimals. */
export const elapsedMs = (started: number): number => Math.round((performance.now() - started) * 100) / 100;

/**
 * One structured JSON line per request (route pattern, status, duration, cache layer) and the request
 * metrics. The line is written after the response is built; its policy comes from `REQUEST_LOG`.
 */
export const accessLog = (opts: AccessLogOptions = {}): MiddlewareHandler<AppEnv> => {
  const record = requestRecorder(opts.write);
  return async function accessLog(c, next) {
    const started = performance.now();
    await next();
    const matched = routePath(c);
    record(
      c.env,
      { waitUntil: (p) => c.executionCtx.waitUntil(p) },
      {
        method: c.req.method,
        route: !matched || matched === "/*" ? "unmatched" : matched,
        path: c.req.path,
        status: c.res.status,
        durationMs: elapsedMs(started),
        requestId: c.get("requestId"),
        trace: c.get("trace"),
        parentSpanId: c.get("parentSpanId"),
        cacheStatus: c.get("cacheStatus"),
        user: c.get("principal")?.sub,
      },
    );
  };
};

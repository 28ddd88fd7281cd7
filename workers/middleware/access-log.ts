import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import { metrics } from "../../lib/metrics";
import { recordSpan } from "../../lib/otel";
import type { AppEnv } from "../types";

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

/**
 * One structured JSON line per request (route pattern, status, duration, cache layer) and the request
 * metrics. The line is written after the response is built; its policy comes from `REQUEST_LOG`.
 */
export const accessLog = (opts: AccessLogOptions = {}): MiddlewareHandler<AppEnv> => {
  const write = opts.write ?? ((line: string) => console.log(line));
  let policyFor: string | undefined;
  let policy = logPolicy(undefined);
  return async function accessLog(c, next) {
    const started = performance.now();
    await next();
    const durationMs = Math.round((performance.now() - started) * 100) / 100;
    const status = c.res.status;
    const matched = routePath(c);
    const route = !matched || matched === "/*" ? "unmatched" : matched;
    metrics.inc("breakwater_http_requests_total", { method: c.req.method, route, status }, 1, "HTTP requests by route and status");
    metrics.observe("breakwater_http_request_duration_ms", { route }, durationMs, "HTTP request duration (ms)");
    if (metrics.enabled)
      c.env.METRICS_AE?.writeDataPoint({
        indexes: [route],
        blobs: [route, c.req.method, String(status), c.get("cacheStatus") ?? ""],
        doubles: [durationMs, 1],
      });
    const span = c.get("trace");
    if (span && c.env.OTEL_EXPORTER_OTLP_ENDPOINT) {
      const end = Date.now();
      const parentSpanId = c.get("parentSpanId");
      const flush = recordSpan(c.env.OTEL_EXPORTER_OTLP_ENDPOINT, {
        trace: span,
        ...(parentSpanId ? { parentSpanId } : {}),
        name: `${c.req.method} ${route}`,
        startMs: end - durationMs,
        endMs: end,
        attributes: {
          "http.request.method": c.req.method,
          "http.route": route,
          "http.response.status_code": status,
          "breakwater.request_id": c.get("requestId"),
        },
        error: status >= 500,
      });
      if (flush) c.executionCtx.waitUntil(flush);
    }
    if (policyFor !== c.env.REQUEST_LOG) {
      policyFor = c.env.REQUEST_LOG;
      policy = logPolicy(policyFor);
    }
    if (!policy(status)) return;
    write(
      JSON.stringify({
        level: status >= 500 ? "error" : status >= 400 ? "warn" : "info",
        msg: "request",
        requestId: c.get("requestId"),
        traceId: c.get("trace")?.traceId,
        method: c.req.method,
        route,
        path: c.req.path,
        status,
        durationMs,
        cache: c.get("cacheStatus"),
        user: c.get("principal")?.sub,
      }),
    );
  };
};

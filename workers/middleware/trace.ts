import type { MiddlewareHandler } from "hono";
import { config } from "../../lib/config";
import { childSpan, formatTraceparent, parseTraceparent, type TraceContext } from "../../lib/trace";
import type { AppEnv } from "../types";

/**
 * Accepts `traceparent` from the caller (or starts a trace), makes this request a child span, stores it
 * as `trace`, and answers with the request's own traceparent so a client can quote it — except on public
 * answers ({@link isPublicAnswer}). With `TELEMETRY=off` (a benchmark switch) it does nothing and `trace`
 * stays unset.
 */
export const trace = (): MiddlewareHandler<AppEnv> =>
  async function trace(c, next) {
    const t = requestSpan(c.env, c.req.header("traceparent"));
    if (!t) return next();
    c.set("trace", t.span);
    if (t.parentSpanId) c.set("parentSpanId", t.parentSpanId);
    await next();
    if (!isPublicAnswer(c.res.headers)) c.res.headers.set("traceparent", t.header);
  };

/**
 * Whether an answer is public (`Cache-Control: public`: the catalog, availability, the OpenAPI document,
 * static pages). A public answer is the same for every caller and shared caches may keep it, so it
 * carries no per-request span: the request's log line has its `traceId`, and `X-Request-Id` (which every
 * answer carries) finds that line. It also spares the busiest answers a header, which the runtime would
 * build on every one of them.
 */
const isPublicAnswer = (headers: Headers): boolean => headers.get("Cache-Control")?.startsWith("public") === true;

/** This request's span under the caller's `traceparent` (or a new trace); undefined with TELEMETRY=off. */
export function requestSpan(
  env: object,
  traceparent: string | null | undefined,
): { span: TraceContext; parentSpanId: string | undefined; header: string } | undefined {
  if (config(env).TELEMETRY === "off") return undefined;
  const parent = parseTraceparent(traceparent);
  const span = childSpan(parent);
  return { span, parentSpanId: parent?.spanId, header: formatTraceparent(span) };
}

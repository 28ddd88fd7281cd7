import type { MiddlewareHandler } from "hono";
import { childSpan, formatTraceparent, parseTraceparent, type TraceContext } from "../../lib/trace";
import type { AppEnv } from "../types";

/**
 * Accepts `traceparent` from the caller (or starts a trace), makes this request a child span, stores it
 * as `trace`, and answers with the request's own traceparent so a client can quote it. With
 * `TELEMETRY=off` (a benchmark switch) it does nothing and `trace` stays unset.
 */
export const trace = (): MiddlewareHandler<AppEnv> =>
  async function trace(c, next) {
    const t = requestSpan(c.env, c.req.header("traceparent"));
    if (!t) return next();
    c.set("trace", t.span);
    if (t.parentSpanId) c.set("parentSpanId", t.parentSpanId);
    await next();
    c.res.headers.set("traceparent", t.header);
  };

/** This request's span under the caller's `traceparent` (or a new trace); undefined with TELEMETRY=off. */
export function requestSpan(
  env: Pick<Env, "TELEMETRY">,
  traceparent: string | null | undefined,
): { span: TraceContext; parentSpanId: string | undefined; header: string } | undefined {
  if (env.TELEMETRY === "off") return undefined;
  const parent = parseTraceparent(traceparent);
  const span = childSpan(parent);
  return { span, parentSpanId: parent?.spanId, header: formatTraceparent(span) };
}

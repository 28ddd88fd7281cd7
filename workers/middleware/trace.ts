import type { MiddlewareHandler } from "hono";
import { childSpan, formatTraceparent, parseTraceparent } from "../../lib/trace";
import type { AppEnv } from "../types";

/**
 * Accepts `traceparent` from the caller (or starts a trace), makes this request a child span, stores it
 * as `trace`, and answers with the request's own traceparent so a client can quote it. With
 * `TELEMETRY=off` (a benchmark switch) it does nothing and `trace` stays unset.
 */
export const trace = (): MiddlewareHandler<AppEnv> =>
  async function trace(c, next) {
    if (c.env.TELEMETRY === "off") return next();
    const parent = parseTraceparent(c.req.header("traceparent"));
    const span = childSpan(parent);
    c.set("trace", span);
    if (parent) c.set("parentSpanId", parent.spanId);
    await next();
    c.res.headers.set("traceparent", formatTraceparent(span));
  };

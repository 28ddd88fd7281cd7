import type { Principal } from "../lib/auth";
import type { TraceContext } from "../lib/trace";

/** Per-request values set by middleware. */
interface AppVariables {
  requestId: string;
  /** Set by `auth()`; routes behind it can rely on it. */
  principal: Principal;
  /** W3C trace context of this request (set by `trace()`; unset with TELEMETRY=off). */
  trace?: TraceContext;
  /** The caller's span id, when it sent a traceparent. */
  parentSpanId?: string;
  /** Which cache layer answered a cacheable read (for the access log). */
  cacheStatus?: string;
}

/** The Hono environment of every route and middleware. */
export interface AppEnv {
  Bindings: Env;
  Variables: AppVariables;
}

import type { Principal } from "../lib/auth";

/** Per-request values set by middleware. */
export interface AppVariables {
  requestId: string;
  /** Set by `auth()`; routes behind it can rely on it. */
  principal: Principal;
  /** Which cache layer answered a cacheable read (for the access log). */
  cacheStatus?: string;
}

/** The Hono environment of every route and middleware. */
export interface AppEnv {
  Bindings: Env;
  Variables: AppVariables;
}

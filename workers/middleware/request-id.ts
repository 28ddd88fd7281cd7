import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../types";

/** Options of {@link requestId}. */
export interface RequestIdOptions {
  /** Incoming header to trust (from a proxy or the client), if it looks like an id. */
  header?: string;
}

const SAFE_ID = /^[A-Za-z0-9._-]{8,64}$/;

/**
 * Gives every request an id: the caller's `X-Request-Id` when it is a plausible id, otherwise a new UUID.
 * The id is set on the context (`requestId`) and echoed on every response, errors included.
 */
export const requestId = (opts: RequestIdOptions = {}): MiddlewareHandler<AppEnv> => {
  const header = opts.header ?? "X-Request-Id";
  return async function requestId(c, next) {
    const incoming = c.req.header(header);
    const id = incoming && SAFE_ID.test(incoming) ? incoming : crypto.randomUUID();
    c.set("requestId", id);
    await next();
    c.res.headers.set("X-Request-Id", id);
  };
};

import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../types";

/** Options of {@link requestId}. */
export interface RequestIdOptions {
  /** Incoming header to trust (from a proxy or the client), if it looks like an id. */
  header?: string;
}

const SAFE_ID = /^[A-Za-z0-9._-]{8,64}$/;

/** The id of a request: the caller's when it is a plausible id, otherwise a new UUID. */
export const requestIdFor = (incoming: string | null | undefined): string =>
  incoming && SAFE_ID.test(incoming) ? incoming : crypto.randomUUID();

/**
 * Gives every request an id: the caller's `X-Request-Id` when it is a plausible id, otherwise a new UUID.
 * The id is set on the context (`requestId`) and echoed on every response, errors included.
 */
export const requestId = (opts: RequestIdOptions = {}): MiddlewareHandler<AppEnv> => {
  const header = opts.header ?? "X-Request-Id";
  return async function requestId(c, next) {
    const id = requestIdFor(c.req.header(header));
    c.set("requestId", id);
    await next();
    c.res.headers.set("X-Request-Id", id);
  };
};

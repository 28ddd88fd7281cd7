import type { MiddlewareHandler } from "hono";
import { bodyLimit as honoBodyLimit } from "hono/body-limit";
import { config } from "../../lib/config";
import { ApiError } from "../../lib/problem";
import type { AppEnv } from "../types";

/** Options of {@link bodyLimit}. */
export interface BodyLimitOptions {
  /** A fixed limit in place of the configured MAX_BODY_BYTES. */
  maxBytes?: number;
}

/**
 * Refuses bodies larger than `MAX_BODY_BYTES` with 413 `payload_too_large`, whether the size is declared
 * in Content-Length or only discovered while streaming.
 */
export const bodyLimit = (opts: BodyLimitOptions = {}): MiddlewareHandler<AppEnv> => {
  const limiters = new Map<number, MiddlewareHandler>();
  const onError = (): never => {
    throw new ApiError("payload_too_large", "The request body is larger than this API accepts.");
  };
  return async function bodyLimit(c, next) {
    if (c.req.method === "GET" || c.req.method === "HEAD" || c.req.method === "OPTIONS") return next();
    const max = opts.maxBytes ?? config(c.env).MAX_BODY_BYTES;
    let limiter = limiters.get(max);
    if (!limiter) {
      limiter = honoBodyLimit({ maxSize: max, onError });
      limiters.set(max, limiter);
    }
    return limiter(c, next);
  };
};

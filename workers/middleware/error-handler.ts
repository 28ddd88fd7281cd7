import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { log } from "../../lib/log";
import { ApiError, problemResponse } from "../../lib/problem";
import type { AppEnv } from "../types";

/** Maps Hono's own HTTP exceptions (malformed JSON, body limit…) onto our codes. */
function fromHttpException(err: HTTPException): ApiError {
  if (err.status === 413) return new ApiError("payload_too_large");
  if (err.status === 401) return new ApiError("unauthorized");
  if (err.status === 400) return new ApiError("validation_failed", err.message || "The request is malformed.");
  return new ApiError(err.status >= 500 ? "internal_error" : "validation_failed", err.message);
}

const requestIdOf = (c: Context<AppEnv>) => c.get("requestId") ?? crypto.randomUUID();

/**
 * The one place errors become responses. ApiErrors keep their code; Hono exceptions are mapped; anything
 * else is logged with its stack and answered as a 500 with no internals.
 */
export const onError: ErrorHandler<AppEnv> = (err, c) => {
  let apiError: ApiError;
  if (err instanceof ApiError) apiError = err;
  else if (err instanceof HTTPException) apiError = fromHttpException(err);
  else {
    log.error("unhandled", { requestId: c.get("requestId"), route: c.req.path, error: String(err), stack: err.stack });
    apiError = new ApiError("internal_error", "Something went wrong. Quote the requestId when you report it.");
  }
  return problemResponse(apiError, requestIdOf(c));
};

/** 404 problem for unknown routes. */
export const notFound: NotFoundHandler<AppEnv> = (c) =>
  problemResponse(new ApiError("not_found", `No route for ${c.req.method} ${c.req.path}.`), requestIdOf(c));

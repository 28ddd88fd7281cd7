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

/** A route as the router lists it (`app.routes`). */
export interface KnownRoute {
  method: string;
  path: string;
}

/** A matcher for a Hono path pattern (`/v1/events/:id`, `:id{[0-9]+}`, `*`). */
const patternOf = (path: string): RegExp =>
  new RegExp(
    `^${path
      .split("/")
      .map((part) => {
        const custom = /^:\w+\{(.+)\}$/.exec(part);
        if (custom) return `(?:${custom[1]})`;
        if (part.startsWith(":")) return "[^/]+";
        if (part === "*") return ".*";
        return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      })
      .join("/")}/?$`,
  );

/**
 * Answers a request no route took: 405 `method_not_allowed` with `Allow` when its path is a known route's
 * (RFC 9110 §15.5.6; a plain OPTIONS gets 204 with `Allow`), else 404. `routes` is read on the first miss, once every route is mounted.
 */
export const notFound = (routes: () => readonly KnownRoute[]): NotFoundHandler<AppEnv> => {
  let table: { pattern: RegExp; methods: Set<string> }[] | undefined;
  const build = () => {
    const byPath = new Map<string, Set<string>>();
    for (const r of routes()) {
      if (r.method === "ALL" || r.path === "*" || r.path === "/*") continue;
      const set = byPath.get(r.path) ?? new Set<string>();
      set.add(r.method);
      if (r.method === "GET") set.add("HEAD");
      byPath.set(r.path, set);
    }
    return [...byPath].map(([path, methods]) => ({ pattern: patternOf(path), methods }));
  };
  return function notFound(c) {
    table ??= build();
    const allowed = new Set<string>();
    for (const t of table) if (t.pattern.test(c.req.path)) for (const m of t.methods) allowed.add(m);
    if (allowed.size > 0) {
      allowed.add("OPTIONS");
      const allow = [...allowed].sort().join(", ");
      // OPTIONS that is not a CORS preflight asks which methods the path takes (RFC 9110 §9.3.7).
      if (c.req.method === "OPTIONS") return new Response(null, { status: 204, headers: { Allow: allow, "X-Request-Id": requestIdOf(c) } });
      return problemResponse(
        new ApiError("method_not_allowed", `${c.req.method} is not allowed on ${c.req.path}; use ${allow}.`, { headers: { Allow: allow } }),
        requestIdOf(c),
      );
    }
    return problemResponse(new ApiError("not_found", `No route for ${c.req.method} ${c.req.path}.`), requestIdOf(c));
  };
};

import { freshEvent, freshEventList } from "../lib/catalog";
import { EVENT_ID } from "../lib/ids";
import { memoizedPerObject } from "../lib/memoized";
import type { CachedBody } from "../lib/read-cache";
import { CATALOG_CACHE, CATALOG_ROUTES, cachedHeaders, cachedStatus, cacheStatusOf } from "./http";
import { elapsedMs, requestRecorder } from "./middleware/access-log";
import { requestIdFor } from "./middleware/request-id";
import { isSecure, securityHeadersOf } from "./middleware/security-headers";

/**
 * The router-free path of catalog reads. During a ticket drop almost every request is a `GET` of one of
 * a few events, already in this isolate's micro-cache. Those hits are answered here, before the router:
 * one lookup, one `Response` built from headers prepared once per cached document, and the same accounting
 * the middleware does (request id, security headers, ETag/304, metrics, log line, and the span when the line
 * or an exporter wants it: a public answer carries no `traceparent`, see workers/middleware/trace.ts).
 * Anything else — another route, another method, a query string, a cross-origin request, a document this
 * isolate does not hold (not found, never read, or past its lifetime without a fresh version manifest that vouches
 * for it) — returns undefined and goes through the Hono app, which fills the cache. The answers of both
 * paths are the same; test/routes/cached-reads.test.ts holds them side by side.
 */

const { list: LIST_ROUTE, event: EVENT_ROUTE } = CATALOG_ROUTES;
const EVENT_PREFIX = `${LIST_ROUTE}/`;

/** The catalog read a URL asks for (route, path, event id); undefined for any other URL. */
export function catalogReadOf(url: string): { route: string; path: string; id?: string } | undefined {
  // The path starts at the first "/" after "scheme://host"; a query string keeps it from matching below.
  const path = url.slice(url.indexOf("/", url.indexOf("//") + 2));
  if (path === LIST_ROUTE) return { route: LIST_ROUTE, path };
  if (!path.startsWith(EVENT_PREFIX)) return undefined;
  const id = path.slice(EVENT_PREFIX.length);
  return EVENT_ID.test(id) ? { route: EVENT_ROUTE, path, id } : undefined;
}

const record = requestRecorder();

/**
 * The headers of a cached answer that are the same for every request (all but `X-Request-Id`): one
 * `Headers` per cached document and status, built on its first answer and dropped with the document. The
 * `Response` constructor copies a `Headers` natively, where a plain object would be converted property by
 * property on every request: on the busiest path, work per request that does not depend on the request
 * is done once.
 */
const sharedHeadersOf = (status: 200 | 304, secure: boolean) =>
  memoizedPerObject((value: CachedBody) => new Headers({ ...cachedHeaders(value, CATALOG_CACHE, status), ...securityHeadersOf(secure) }));
/** By status, then plain http (0) or https (1). */
const SHARED_HEADERS = {
  200: [sharedHeadersOf(200, false), sharedHeadersOf(200, true)],
  304: [sharedHeadersOf(304, false), sharedHeadersOf(304, true)],
} as const;

/** Answers a catalog read that this isolate holds fresh; undefined when the router must answer it. */
export function answerCachedRead(req: Request, env: Env, ctx: ExecutionContext): Response | undefined {
  if (req.method !== "GET") return undefined;
  const url = req.url;
  const read = catalogReadOf(url);
  if (!read) return undefined;
  const headers = req.headers;
  // CORS answers (and preflights) stay with the cors middleware.
  if (headers.has("Origin")) return undefined;
  const started = performance.now();
  const hit = read.id === undefined ? freshEventList() : freshEvent(read.id);
  if (!hit) return undefined;
  const requestId = requestIdFor(headers.get("X-Request-Id"));
  const status = cachedStatus(hit.value, headers.get("If-None-Match"));
  const res = new Response(status === 304 ? null : hit.value.body, {
    status,
    headers: SHARED_HEADERS[status][isSecure(url) ? 1 : 0](hit.value),
  });
  res.headers.set("X-Request-Id", requestId);
  record(env, ctx, {
    method: "GET",
    route: read.route,
    path: read.path,
    status,
    durationMs: elapsedMs(started),
    requestId,
    trace: undefined,
    parentSpanId: undefined,
    spanFrom: headers,
    cacheStatus: cacheStatusOf(hit.layer),
    user: undefined,
  });
  return res;
}

import { freshEvent, freshEventList } from "../lib/catalog";
import { EVENT_ID } from "../lib/ids";
import type { CachedBody } from "../lib/read-cache";
import { CATALOG_CACHE, CATALOG_ROUTES, cachedHeaders, cachedStatus, cacheStatusOf } from "./http";
import { finisher, isSecure } from "./middleware/finish";

/**
 * The router-free path of catalog reads. During a ticket drop almost every request is a `GET` of one of
 * a few events, already in this isolate's micro-cache. Those hits are answered here, before the router:
 * one lookup, and one `Response` built from headers prepared once per cached document (the ETag/304 rule
 * of the router's `sendCached`, workers/http.ts), finished by the step that finishes every answer of the
 * app (workers/middleware/finish.ts: request id, security headers, metrics, log line, and the span when
 * the line or an exporter wants it: a public answer carries no `traceparent`, see
 * workers/middleware/trace.ts).
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

/**
 * The headers of a cached answer that are the same for every request (all but `X-Request-Id`), security
 * headers included: one `Headers` per cached document, status and scheme (the finish step's `prepared`).
 */
const PREPARED = {
  200: finisher.prepared((value: CachedBody) => cachedHeaders(value, CATALOG_CACHE, 200)),
  304: finisher.prepared((value: CachedBody) => cachedHeaders(value, CATALOG_CACHE, 304)),
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
  const status = cachedStatus(hit.value, headers.get("If-None-Match"));
  const res = new Response(status === 304 ? null : hit.value.body, { status, headers: PREPARED[status](hit.value, isSecure(url)) });
  return finisher.finishPrepared(res, env, ctx, {
    method: "GET",
    route: read.route,
    path: read.path,
    status,
    started,
    requestId: finisher.idOf(headers),
    trace: undefined,
    parentSpanId: undefined,
    spanFrom: headers,
    cacheStatus: cacheStatusOf(hit.layer),
    user: undefined,
  });
}

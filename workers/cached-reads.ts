import { freshEvent, freshEventList } from "../lib/catalog";
import { EVENT_ID } from "../lib/ids";
import { CATALOG_CACHE, CATALOG_ROUTES, cachedAnswer, cacheStatusOf } from "./http";
import { elapsedMs, requestRecorder } from "./middleware/access-log";
import { requestIdFor } from "./middleware/request-id";
import { SECURITY_HEADERS } from "./middleware/security-headers";
import { requestSpan } from "./middleware/trace";

/**
 * The router-free path of catalog reads. During a ticket drop almost every request is a `GET` of one of
 * a few events, already in this isolate's micro-cache. Those hits are answered here, before the router:
 * one lookup, one `Response` built with all its headers at once, and the same accounting the middleware
 * does (request id, traceparent, security headers, ETag/304, metrics, span, log line). Anything else —
 * another route, another method, a query string, a cross-origin request, a document this isolate does
 * not hold (not found, never read, or past its lifetime without a fresh version manifest that vouches
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

/** Answers a catalog read that this isolate holds fresh; undefined when the router must answer it. */
export function answerCachedRead(req: Request, env: Env, ctx: ExecutionContext): Response | undefined {
  if (req.method !== "GET") return undefined;
  const read = catalogReadOf(req.url);
  if (!read) return undefined;
  const headers = req.headers;
  // CORS answers (and preflights) stay with the cors middleware.
  if (headers.has("Origin")) return undefined;
  const started = performance.now();
  const hit = read.id === undefined ? freshEventList() : freshEvent(read.id);
  if (!hit) return undefined;
  const requestId = requestIdFor(headers.get("X-Request-Id"));
  const span = requestSpan(env, headers.get("traceparent"));
  const answer = cachedAnswer(hit.value, CATALOG_CACHE, headers.get("If-None-Match"));
  const out = Object.assign(answer.headers, SECURITY_HEADERS);
  out["X-Request-Id"] = requestId;
  if (span) out.traceparent = span.header;
  const res = new Response(answer.body, { status: answer.status, headers: out });
  record(env, ctx, {
    method: "GET",
    route: read.route,
    path: read.path,
    status: answer.status,
    durationMs: elapsedMs(started),
    requestId,
    trace: span?.span,
    parentSpanId: span?.parentSpanId,
    cacheStatus: cacheStatusOf(hit.layer),
    user: undefined,
  });
  return res;
}

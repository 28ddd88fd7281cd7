import type { Context } from "hono";
import type { Principal } from "../lib/auth";
import { type CatalogDeps, catalogDb, getEventDoc, type ReadContext } from "../lib/catalog";
import { isInventoryOf, locationOf } from "../lib/holds";
import { memoized } from "../lib/memoized";
import { ApiError } from "../lib/problem";
import type { CachedBody, CacheLayer } from "../lib/read-cache";
import { HIT_LAYERS } from "../lib/read-cache";
import type { AppEnv } from "./types";

/**
 * Small helpers shared by route files: building domain dependencies from the context and answering
 * cacheable reads. Domain code never sees the Context; it gets what these return.
 */

/** Catalog bindings of this request. */
export const catalogDeps = (c: Context<AppEnv>): CatalogDeps => ({ db: catalogDb(c.env.CATALOG_DB), kv: c.env.CATALOG_KV });

/**
 * What a cached catalog read needs. The bindings and the origin are worked out only when a read goes
 * past the micro-cache: a hit (most reads) never parses the URL.
 */
export const readContext = (c: Context<AppEnv>): ReadContext => {
  let deps: CatalogDeps | undefined;
  let origin: string | undefined;
  return {
    get deps() {
      deps ??= catalogDeps(c);
      return deps;
    },
    get origin() {
      origin ??= new URL(c.req.url).origin;
      return origin;
    },
    waitUntil: (p) => c.executionCtx.waitUntil(p),
  };
};

/**
 * 404 unless a hold or order id names an Inventory DO of an existing event, section and shard (from the
 * cached catalog), so a crafted id never addresses, and creates, a Durable Object.
 */
export async function requireKnownLocation(c: Context<AppEnv>, prefix: "hld" | "ord", id: string): Promise<void> {
  const loc = locationOf(prefix, id);
  const event = await getEventDoc(readContext(c), loc.eventId);
  if (!event || !isInventoryOf(event, loc)) throw new ApiError("not_found", prefix === "hld" ? "No such hold." : "No such order.");
}

/** The signed-in caller (routes behind `auth()`). */
export const principalOf = (c: Context<AppEnv>): Principal => c.get("principal");

/** True when `If-None-Match` names `etag` (or is `*`). */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === "*") return true;
  return header.split(",").some((t) => t.trim().replace(/^W\//, "") === etag);
}

/** Browser and shared-cache lifetimes of a cacheable read (seconds). */
export interface CachePolicy {
  maxAge: number;
  sMaxAge: number;
  swr: number;
}

/** Availability snapshots and seat maps: they lag the truth by about a second, so shared caches keep them 1 s. */
export const SNAPSHOT_CACHE: CachePolicy = { maxAge: 1, sMaxAge: 1, swr: 5 };

/** The Cache-Control value of a policy, built once per policy object. */
const cacheControlOf = memoized((p: CachePolicy) => `public, max-age=${p.maxAge}, s-maxage=${p.sMaxAge}, stale-while-revalidate=${p.swr}`);

/** Route patterns of the two catalog reads (the router's and the router-free path's, workers/cached-reads.ts). */
export const CATALOG_ROUTES = { list: "/v1/events", event: "/v1/events/:id" } as const;

/** Browser/shared-cache policy of catalog reads; matches the documented staleness. */
export const CATALOG_CACHE: CachePolicy = { maxAge: 1, sMaxAge: 5, swr: 30 };

/** The access-log cache status of a read answered by `layer` (`hit:micro`, `miss:kv`…), built once per layer. */
export const cacheStatusOf = memoized((layer: CacheLayer) => `${HIT_LAYERS.has(layer) ? "hit" : "miss"}:${layer}`);

/** The status of a cacheable read's answer: 304 when `If-None-Match` names its ETag, else 200. */
export const cachedStatus = (value: CachedBody, ifNoneMatch: string | null | undefined): 200 | 304 =>
  etagMatches(ifNoneMatch ?? undefined, value.etag) ? 304 : 200;

/** The headers of a cacheable read's answer with `status`: the same for every request that gets it. */
export function cachedHeaders(value: CachedBody, policy: CachePolicy, status: 200 | 304): Record<string, string> {
  const headers: Record<string, string> = { "Cache-Control": cacheControlOf(policy), ETag: value.etag };
  if (status === 200) headers["Content-Type"] = "application/json; charset=utf-8";
  return headers;
}

/**
 * Answers a cacheable read: 200 with the body, or 304 when the client already has it. `maxAge` is the
 * browser lifetime; shared caches may keep it `sMaxAge` and serve it stale while revalidating.
 */
export function sendCached(c: Context<AppEnv>, cached: { value: CachedBody; layer: CacheLayer }, policy: CachePolicy): Response {
  c.set("cacheStatus", cacheStatusOf(cached.layer));
  const status = cachedStatus(cached.value, c.req.header("If-None-Match"));
  const headers = cachedHeaders(cached.value, policy, status);
  return status === 304 ? c.body(null, 304, headers) : c.body(cached.value.body, 200, headers);
}

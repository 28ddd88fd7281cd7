import type { Context } from "hono";
import type { Principal } from "../lib/auth";
import { type CatalogDeps, catalogDb, type ReadContext } from "../lib/catalog";
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

const cacheControls = new WeakMap<CachePolicy, string>();
/** The Cache-Control value of a policy, built once per policy object. */
const cacheControlOf = (p: CachePolicy): string => {
  let v = cacheControls.get(p);
  if (v === undefined) {
    v = `public, max-age=${p.maxAge}, s-maxage=${p.sMaxAge}, stale-while-revalidate=${p.swr}`;
    cacheControls.set(p, v);
  }
  return v;
};

/**
 * Answers a cacheable read: 200 with the body, or 304 when the client already has it. `maxAge` is the
 * browser lifetime; shared caches may keep it `sMaxAge` and serve it stale while revalidating.
 */
export function sendCached(c: Context<AppEnv>, cached: { value: CachedBody; layer: CacheLayer }, policy: CachePolicy): Response {
  c.set("cacheStatus", `${HIT_LAYERS.has(cached.layer) ? "hit" : "miss"}:${cached.layer}`);
  const headers = { "Cache-Control": cacheControlOf(policy), ETag: cached.value.etag };
  if (etagMatches(c.req.header("If-None-Match"), cached.value.etag)) return c.body(null, 304, headers);
  return c.body(cached.value.body, 200, { ...headers, "Content-Type": "application/json; charset=utf-8" });
}

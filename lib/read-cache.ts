import { memoized } from "./memoized";
import { metric } from "./metric-catalog";

/**
 * The read path of DESIGN.md: in-isolate micro-cache (with request coalescing) → Cache API → KV → origin.
 *
 * Values are response bodies already serialized, with their ETag, so a hit costs a Map lookup and a
 * `new Response(string)`. Misses are coalesced: one request per isolate per key goes further while the
 * others wait for it. Not-found answers are cached too (shorter), so a storm of unknown ids cannot reach
 * the database.
 */

/** A serialized body and its strong ETag, and the document version it holds when the source knows it. */
export interface CachedBody {
  body: string;
  etag: string;
  version?: number;
  /** The body's parsed form, set by {@link parsedBody} (kept on the value, so it lives and dies with the entry). */
  parsed?: unknown;
}

/**
 * The parsed form of a cached body, parsed once per cached value rather than once per request: readers
 * on hot paths (holds read the event document on every call) share the entry's parse. One cache key is
 * always read by one kind of reader, so `parse` is the same function for a given value.
 */
export function parsedBody<T>(value: CachedBody, parse: (body: string) => T): T {
  if (value.parsed === undefined) value.parsed = parse(value.body);
  return value.parsed as T;
}

/**
 * Where an answer came from. `micro`, `validated` and `coalesced` never left the isolate (`validated`: a
 * micro-cache entry past its lifetime whose version the source confirmed still current); `edge` is the
 * Cache API.
 */
export type CacheLayer = "micro" | "validated" | "coalesced" | "edge" | "kv" | "origin";

/** Layers counted as cache hits: the answer came from a cache, not from the read model or the database. */
export const HIT_LAYERS: ReadonlySet<CacheLayer> = new Set(["micro", "validated", "coalesced", "edge"]);

/** How to fill one key. */
export interface ReadThroughSource {
  /** Logical key in the micro-cache and metrics (never user-controlled beyond a validated id). */
  key: string;
  /** Absolute URL used as the Cache API key. */
  cacheUrl: string;
  /** Seconds the Cache API keeps the entry (`s-maxage`). */
  edgeTtlSeconds: number;
  /** Reads the serialized body from KV; null when absent. */
  kv: () => Promise<string | null>;
  /** Builds the body from the source of truth (and republishes it to KV); null when it does not exist. */
  origin: () => Promise<string | null>;
  /** Keeps background writes (Cache API puts) alive after the response. */
  waitUntil: (p: Promise<unknown>) => void;
  /** The document version in a body (stored with the entry for {@link ReadThroughSource.isCurrent}). */
  versionOf?: (body: string) => number | undefined;
  /**
   * Whether `version` is still the current one (e.g. it matches a version manifest that is itself read
   * through a cache). When it is, an entry past its lifetime is renewed in place instead of filled again:
   * a document that has not changed costs no lookup beyond the isolate. Errors count as "not current".
   */
  isCurrent?: (version: number) => Promise<boolean>;
  /** Count this read in `breakwater_cache_lookups_total` (default true; internal reads such as manifests opt out). */
  counted?: boolean;
}

/** One fill in progress: its result and when it started. */
interface Flight {
  promise: Promise<CachedBody | null>;
  started: number;
}

/** Settings of one micro-cache. */
export interface MicroCacheOptions {
  /** How long a found value is served from memory. */
  ttlMs: number;
  /** How long a not-found answer is served from memory. */
  negativeTtlMs: number;
  /** Most keys kept; the oldest inserted is dropped first. */
  maxEntries: number;
  /** The Cache API to use; undefined disables that layer. */
  edge?: Cache;
  /**
   * A fill older than this is not waited on (default 5 000 ms): the next request fills the key itself, so
   * one stuck fill cannot hold a key hostage.
   */
  coalesceMaxMs?: number;
  /** The clock, in milliseconds (default `Date.now`; tests pass a manual one). */
  now?: () => number;
}

interface Entry {
  value: CachedBody | null;
  expires: number;
}

/** 64-bit FNV-1a of a string, as 16 hex digits. Fast and stable; used for ETags, not for security. */
function fnv64(s: string): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  }
  return (h1 >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0");
}

/** Wraps a serialized body with its ETag. */
const withEtag = (body: string): CachedBody => ({ body, etag: `"${fnv64(body)}"` });

/** The lookups counter of one layer, resolved once per layer. */
const lookupsOf = memoized((layer: CacheLayer) => metric.cacheLookups.series({ layer }));
const countLookup = (layer: CacheLayer): void => lookupsOf(layer).inc();

/** A read-through cache for one kind of document. */
export class ReadThroughCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Flight>();

  private readonly now: () => number;

  constructor(private readonly opts: MicroCacheOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** The value of `key` when this isolate holds it within its lifetime; not counted. */
  peek(key: string): CachedBody | undefined {
    const hit = this.entries.get(key);
    return hit?.value && hit.expires > this.now() ? hit.value : undefined;
  }

  /**
   * The synchronous part of {@link ReadThroughCache.get}, for a caller that answers hits without awaiting
   * anything: the value of `key` when this isolate holds it within its lifetime (`micro`), or past it
   * when `isCurrent` can tell at once that its version is still current (`validated`, renewed as `get`
   * would). Counted like `get`. Undefined for everything else (not found, unknown version, nothing
   * held), which is left to `get`.
   */
  fresh(key: string, isCurrent?: (version: number) => boolean): { value: CachedBody; layer: "micro" | "validated" } | undefined {
    const held = this.peek(key);
    if (held) {
      countLookup("micro");
      return { value: held, layer: "micro" };
    }
    const hit = this.entries.get(key);
    const version = hit?.value?.version;
    if (!hit?.value || version === undefined || !isCurrent?.(version)) return undefined;
    this.renew(hit);
    countLookup("validated");
    return { value: hit.value, layer: "validated" };
  }

  /** The value of `src.key` and the layer that answered. */
  async get(src: ReadThroughSource): Promise<{ value: CachedBody | null; layer: CacheLayer }> {
    const now = this.now();
    const hit = this.entries.get(src.key);
    if (hit) {
      if (hit.expires > now) return this.count(src, { value: hit.value, layer: "micro" });
      const version = hit.value?.version;
      if (version !== undefined && src.isCurrent && (await src.isCurrent(version).catch(() => false))) {
        this.renew(hit);
        return this.count(src, { value: hit.value, layer: "validated" });
      }
    }

    const pending = this.inflight.get(src.key);
    if (pending && now - pending.started < (this.opts.coalesceMaxMs ?? 5_000)) {
      // Wait on a promise created by *this* request. Awaiting the filler's promise directly would run this
      // request's continuation inside the filler's I/O context (workerd), and the Response built there could
      // not be sent from this request ("Cannot perform I/O on behalf of a different request"). Resolving our
      // own promise from the other request is handed back to this request's context by the runtime.
      const value = await new Promise<CachedBody | null>((resolve, reject) => {
        pending.promise.then(resolve, reject);
      });
      return this.count(src, { value, layer: "coalesced" });
    }

    let layer: CacheLayer = "origin";
    const flight: Flight = {
      promise: (async () => {
        const filled = await this.fill(src);
        layer = filled.layer;
        return this.remember(src.key, filled.value);
      })(),
      started: now,
    };
    this.inflight.set(src.key, flight);
    // Kept alive past this request's response (or its client going away): requests waiting on it still
    // get their answer.
    src.waitUntil(flight.promise.catch(() => {}));
    try {
      const value = await flight.promise;
      return this.count(src, { value, layer });
    } finally {
      if (this.inflight.get(src.key) === flight) this.inflight.delete(src.key);
    }
  }

  /** Forgets a key in this isolate and in this data centre's Cache API (after an organizer's change). */
  async invalidate(key: string, cacheUrl: string): Promise<void> {
    this.entries.delete(key);
    await this.opts.edge?.delete(cacheUrl);
  }

  /** Empties the micro-cache (tests). */
  clear(): void {
    this.entries.clear();
  }

  /** Another lifetime for an entry whose version was confirmed current. */
  private renew(entry: Entry): void {
    entry.expires = this.now() + this.opts.ttlMs;
  }

  /**
   * Keeps a filled value and returns the one to serve. A refill that brings back the body this isolate
   * already holds (the common case: the list and the version manifest lapse every second and rarely change)
   * renews the held value instead, with its parse ({@link parsedBody}), and the copy just read dies young.
   * For the manifest that parse is the cost: at its limit of 20,000 events, 580 KB of JSON take ~9.5 ms to
   * parse into a ~0.9 MB map (measured in Node 22's V8), which an isolate under load would otherwise redo
   * every second.
   */
  private remember(key: string, value: CachedBody | null): CachedBody | null {
    const held = this.entries.get(key);
    // The version is read from the body, so an equal body has it too; the ETag is the cheap reject.
    if (held?.value && value && held.value.etag === value.etag && held.value.body === value.body) {
      this.renew(held);
      return held.value;
    }
    // A key already held is replaced in place; only a new key makes room.
    if (held === undefined && this.entries.size >= this.opts.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, { value, expires: this.now() + (value ? this.opts.ttlMs : this.opts.negativeTtlMs) });
    return value;
  }

  private async fill(src: ReadThroughSource): Promise<{ value: CachedBody | null; layer: CacheLayer }> {
    const edge = this.opts.edge;
    if (edge) {
      const cached = await edge.match(src.cacheUrl);
      if (cached) {
        const body = await cached.text();
        const value: CachedBody = { body, etag: cached.headers.get("ETag") ?? withEtag(body).etag };
        const version = src.versionOf?.(body);
        if (version !== undefined) value.version = version;
        return { value, layer: "edge" };
      }
    }
    let layer: CacheLayer = "kv";
    let body = await src.kv();
    if (body === null) {
      layer = "origin";
      body = await src.origin();
    }
    if (body === null) return { value: null, layer };
    const value = withEtag(body);
    const version = src.versionOf?.(body);
    if (version !== undefined) value.version = version;
    if (edge) {
      const res = new Response(value.body, {
        headers: { "Content-Type": "application/json", "Cache-Control": `public, s-maxage=${src.edgeTtlSeconds}`, ETag: value.etag },
      });
      src.waitUntil(edge.put(src.cacheUrl, res));
    }
    return { value, layer };
  }

  private count(src: ReadThroughSource, r: { value: CachedBody | null; layer: CacheLayer }) {
    if (src.counted !== false) countLookup(r.layer);
    return r;
  }
}

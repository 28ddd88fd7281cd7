/**
 * A per-isolate cache of an identity provider's key set (JWKS). Verifying a token must not cost a fetch:
 * without a cache, every forged token sent to the API became one request to the provider (an amplifier).
 * The set is kept for `ttlMs`; a token naming a `kid` the set does not have triggers at most one refetch
 * per `refetchIntervalMs` (key rotation), and concurrent misses share one fetch.
 */

/** One JSON Web Key as a JWKS lists it (only the fields this cache reads are typed). */
export interface Jwk extends JsonWebKey {
  kid?: string;
}

/** Options of {@link jwksCache}. */
export interface JwksCacheOptions {
  /** How long a fetched set is used without asking again (ms). */
  ttlMs?: number;
  /** Least time between two fetches caused by unknown `kid`s (ms). */
  refetchIntervalMs?: number;
  /** The fetch used (tests count calls); defaults to the global one. */
  fetch?: (url: string) => Promise<Response>;
  /** Clock (tests). */
  now?: () => number;
}

/** Thrown when the key set cannot be fetched and no earlier copy exists: a dependency failure, not a bad token. */
export class JwksUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JwksUnavailableError";
  }
}

/** The keys a token's `kid` may be verified with. */
export interface JwksCache {
  /** Keys of the set at `url`, refreshed as described above; `kid` is the token's key id. */
  keys(url: string, kid: string): Promise<Jwk[]>;
  /** Fetches made so far (metrics and tests). */
  readonly fetches: number;
}

interface Entry {
  /** The last set fetched, or null before the first success. */
  keys: Jwk[] | null;
  /** When `keys` was fetched. */
  fetchedAt: number;
  /** When a fetch was last started, successful or not. */
  triedAt: number;
  inflight?: Promise<Jwk[]>;
}

/** Default lifetime of a fetched set: 10 minutes. */
const JWKS_TTL_MS = 600_000;
/** Default least time between two fetches of one set: 30 s. */
const JWKS_REFETCH_INTERVAL_MS = 30_000;
const FETCH_TIMEOUT_MS = 5_000;

/** Builds a key-set cache (one per isolate in production: {@link sharedJwksCache}). */
export function jwksCache(opts: JwksCacheOptions = {}): JwksCache {
  const ttlMs = opts.ttlMs ?? JWKS_TTL_MS;
  const refetchIntervalMs = opts.refetchIntervalMs ?? JWKS_REFETCH_INTERVAL_MS;
  const doFetch = opts.fetch ?? ((url: string) => fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) }));
  const now = opts.now ?? (() => Date.now());
  const entries = new Map<string, Entry>();
  let fetches = 0;

  async function load(url: string): Promise<Jwk[]> {
    fetches++;
    let res: Response;
    try {
      res = await doFetch(url);
    } catch (err) {
      throw new JwksUnavailableError(`JWKS fetch failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!res.ok) throw new JwksUnavailableError(`JWKS fetch answered ${res.status}`);
    const data = (await res.json().catch(() => null)) as { keys?: unknown } | null;
    if (!Array.isArray(data?.keys)) throw new JwksUnavailableError("JWKS document has no keys array");
    return data.keys.filter((k): k is Jwk => typeof k === "object" && k !== null);
  }

  function refresh(url: string, entry: Entry): Promise<Jwk[]> {
    entry.triedAt = now();
    entry.inflight = load(url)
      .then(
        (keys) => {
          entry.keys = keys;
          entry.fetchedAt = now();
          return keys;
        },
        (err: unknown) => {
          // A provider outage: keep verifying with the last good set rather than refusing every buyer.
          if (entry.keys) return entry.keys;
          throw err;
        },
      )
      .finally(() => {
        entry.inflight = undefined;
      });
    return entry.inflight;
  }

  return {
    get fetches() {
      return fetches;
    },
    async keys(url, kid) {
      let entry = entries.get(url);
      if (!entry) {
        entry = { keys: null, fetchedAt: Number.NEGATIVE_INFINITY, triedAt: Number.NEGATIVE_INFINITY };
        entries.set(url, entry);
      }
      if (entry.inflight) return entry.inflight;
      const t = now();
      if (entry.keys && t - entry.fetchedAt < ttlMs && entry.keys.some((k) => k.kid === kid)) return entry.keys;
      // Expired, never fetched, or an unknown kid: fetch, but never more than once per interval.
      if (t - entry.triedAt >= refetchIntervalMs) return refresh(url, entry);
      if (entry.keys) return entry.keys;
      throw new JwksUnavailableError("The key set could not be fetched; retrying later.");
    },
  };
}

/** The isolate's key-set cache. */
export const sharedJwksCache: JwksCache = jwksCache();

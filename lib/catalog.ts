import { and, desc, eq, gt, gte, ne } from "drizzle-orm";
import { type DrizzleD1Database, drizzle } from "drizzle-orm/d1";
import { countingD1 } from "./d1-counter";
import * as schema from "./db/catalog-schema";
import {
  type CreateEventInput,
  DEFAULT_ADMIT_PER_MINUTE,
  DEFAULT_EVENT_HOLD_SECONDS,
  defaultGaShards,
  type EventDoc,
  type EventSummary,
  type Section,
  sectionCapacity,
  type UpdateEventInput,
} from "./event-schema";
import { EVENT_ID, newId } from "./ids";
import { log } from "./log";
import { metric } from "./metric-catalog";
import { ApiError } from "./problem";
import { type CachedBody, type CacheLayer, parsedBody, ReadThroughCache, type ReadThroughSource } from "./read-cache";

/**
 * The event catalog: D1 is the source of truth, KV holds the read models (one document per event and
 * the list), and every public read goes through {@link ReadThroughCache}.
 *
 * Staleness (documented in README): the isolate micro-cache serves a value for up to 1 s, the Cache API
 * for up to 5 s in one data centre, and KV may take up to 60 s to reach other locations. An organizer's
 * change is written to D1 and KV at once and evicted from the answering isolate and data centre; a KV
 * write that fails does not fail the change (D1 has it): it is logged and counted, and the cron's
 * {@link republishChangedEvents} repairs it within a minute. Past
 * its second, an event document stays in the micro-cache only while the version manifest (itself read
 * through the same layers, so just as fresh) still names its version.
 */

export type CatalogDb = DrizzleD1Database<typeof schema>;

/** KV keys of the read models. */
export const kvKeys = {
  event: (id: string) => `event:${id}`,
  list: "events:list",
  /** The fallback list: most active upcoming events, published by the cron trigger. */
  popular: "events:popular",
  /** The version manifest: `{ "v": { "<event id>": version } }` of upcoming events. */
  versions: "events:versions",
} as const;

/** Cache API keys of the read models (paths under the request's origin; never served as routes). */
const cachePaths = {
  event: (id: string) => `/__cache/v1/events/${id}`,
  list: "/__cache/v1/events",
  versions: "/__cache/catalog-versions",
} as const;

/** The bindings the catalog needs. */
export interface CatalogDeps {
  db: CatalogDb;
  kv: KVNamespace;
}

const dbs = new WeakMap<D1Database, CatalogDb>();
/** A drizzle handle on the catalog D1, counting every statement in metrics. One per binding. */
export function catalogDb(d1: D1Database): CatalogDb {
  let db = dbs.get(d1);
  if (!db) {
    db = drizzle(countingD1(d1, "catalog"), { schema });
    dbs.set(d1, db);
  }
  return db;
}

/** The public document of an event row. */
export function eventDocFromRow(row: schema.EventRow): EventDoc {
  return {
    id: row.id,
    name: row.name,
    venue: row.venue,
    startsAt: row.startsAt,
    saleStartsAt: row.saleStartsAt,
    currency: row.currency,
    perCustomerLimit: row.perCustomerLimit,
    holdSeconds: row.holdSeconds,
    waitingRoom: { enabled: row.waitingRoomEnabled, admitPerMinute: row.admitPerMinute },
    minPrice: row.minPrice,
    capacity: row.capacity,
    sections: row.sections as Section[],
    status: row.status,
    version: row.version,
    updatedAt: row.updatedAt,
  };
}

const toIso = (s: string) => new Date(s).toISOString();

/** Creates an event owned by `organizerId`, then publishes its read models. */
export async function createEvent(deps: CatalogDeps, organizerId: string, input: CreateEventInput): Promise<EventDoc> {
  const sections: Section[] = input.sections.map((s) =>
    s.kind === "seated"
      ? { id: s.id, name: s.name, kind: "seated", price: s.price, capacity: sectionCapacity(s), rows: s.rows }
      : { id: s.id, name: s.name, kind: "ga", price: s.price, capacity: s.capacity, shards: s.shards ?? defaultGaShards(s.capacity) },
  );
  const now = new Date().toISOString();
  const row: schema.NewEventRow = {
    id: newId("evt"),
    organizerId,
    name: input.name,
    venue: input.venue,
    startsAt: toIso(input.startsAt),
    saleStartsAt: toIso(input.saleStartsAt),
    currency: input.currency,
    perCustomerLimit: input.perCustomerLimit,
    holdSeconds: input.holdSeconds ?? DEFAULT_EVENT_HOLD_SECONDS,
    waitingRoomEnabled: input.waitingRoom?.enabled ?? false,
    admitPerMinute: input.waitingRoom?.admitPerMinute ?? DEFAULT_ADMIT_PER_MINUTE,
    sections,
    minPrice: Math.min(...sections.map((s) => s.price)),
    capacity: sections.reduce((n, s) => n + s.capacity, 0),
    soldOut: false,
    version: 1,
    createdAt: now,
    updatedAt: now,
  };
  const [inserted] = await deps.db.insert(schema.events).values(row).returning();
  if (!inserted) throw new Error("insert returned no row");
  const doc = eventDocFromRow(inserted);
  await publishAfterChange(deps, doc);
  return doc;
}

/** Applies an organizer's change. Only the event's organizer or an admin may call it (checked here). */
export async function updateEvent(
  deps: CatalogDeps,
  id: string,
  actor: { sub: string; role: string },
  patch: UpdateEventInput,
): Promise<EventDoc> {
  const current = await findEventRow(deps.db, id);
  if (!current || (actor.role !== "admin" && current.organizerId !== actor.sub)) throw new ApiError("not_found", `No event ${id}.`);
  const startsAt = patch.startsAt ? toIso(patch.startsAt) : current.startsAt;
  const saleStartsAt = patch.saleStartsAt ? toIso(patch.saleStartsAt) : current.saleStartsAt;
  if (Date.parse(saleStartsAt) >= Date.parse(startsAt))
    throw new ApiError("validation_failed", "saleStartsAt must be before startsAt", {
      errors: [{ path: "saleStartsAt", message: "saleStartsAt must be before startsAt" }],
    });
  const [row] = await deps.db
    .update(schema.events)
    .set({
      name: patch.name ?? current.name,
      venue: patch.venue ?? current.venue,
      startsAt,
      saleStartsAt,
      version: current.version + 1,
      updatedAt: new Date().toISOString(),
    })
    .where(eq(schema.events.id, id))
    .returning();
  if (!row) throw new ApiError("not_found", `No event ${id}.`);
  const doc = eventDocFromRow(row);
  await publishAfterChange(deps, doc);
  return doc;
}

/**
 * Marks an event cancelled (idempotent: a cancelled event is answered as it is), then publishes its read
 * models like any change. The caller checked who may cancel it.
 */
export async function cancelEventInCatalog(deps: CatalogDeps, id: string): Promise<EventDoc> {
  const current = await findEventRow(deps.db, id);
  if (!current) throw new ApiError("not_found", `No event ${id}.`);
  const row =
    current.status === "cancelled"
      ? current
      : (
          await deps.db
            .update(schema.events)
            .set({ status: "cancelled", version: current.version + 1, updatedAt: new Date().toISOString() })
            .where(eq(schema.events.id, id))
            .returning()
        )[0];
  if (!row) throw new ApiError("not_found", `No event ${id}.`);
  const doc = eventDocFromRow(row);
  await publishAfterChange(deps, doc);
  return doc;
}

/** The event row, or undefined (one D1 query; ids of the wrong shape never reach D1). */
export async function findEventRow(db: CatalogDb, id: string): Promise<schema.EventRow | undefined> {
  if (!EVENT_ID.test(id)) return undefined;
  return db.query.events.findFirst({ where: eq(schema.events.id, id) });
}

/** One row of the public event list. */
const summaryOf = (r: schema.EventRow): EventSummary => ({
  id: r.id,
  name: r.name,
  venue: r.venue,
  startsAt: r.startsAt,
  saleStartsAt: r.saleStartsAt,
  minPrice: r.minPrice,
  currency: r.currency,
  soldOut: r.soldOut,
});

/** Serialized body of GET /v1/events/:id. */
const eventBody = (doc: EventDoc): string => JSON.stringify({ event: doc });

/**
 * Writes the event's KV document, then republishes the list and the version manifest (after the document,
 * so a reader that sees the new version finds the new document). A KV failure is thrown, not swallowed.
 */
export async function publishEvent(deps: CatalogDeps, doc: EventDoc): Promise<void> {
  await deps.kv.put(kvKeys.event(doc.id), eventBody(doc));
  await publishListAndVersions(deps);
}

/**
 * Publishes an event after the organizer's change is saved in D1, without failing the change: a refused
 * KV write (KV takes one write per second per key, and `events:list` is shared by every organizer) would
 * otherwise answer 500 for an event that exists. The failure is logged and counted
 * (`breakwater_catalog_publish_failures_total`); {@link republishChangedEvents} (cron) writes it again.
 */
async function publishAfterChange(deps: CatalogDeps, doc: EventDoc): Promise<boolean> {
  try {
    await publishEvent(deps, doc);
    return true;
  } catch (err) {
    metric.catalogPublishFailures.inc({});
    log.error("catalog publish failed; the cron republishes", { eventId: doc.id, error: String(err) });
    return false;
  }
}

/** How far back the cron looks for changed events whose KV document may be missing or stale. */
const REPUBLISH_LOOKBACK_MS = 3_600_000;
/** Most events the cron checks per run. */
const REPUBLISH_LIMIT = 200;

/**
 * The cron's repair of the per-event KV documents: for events changed in the last
 * {@link REPUBLISH_LOOKBACK_MS}, writes the document again when KV lacks it or holds another version.
 * Returns the ids written. (The list and the version manifest are rebuilt by the next cron step.)
 */
export async function republishChangedEvents(deps: CatalogDeps, now: number): Promise<string[]> {
  const rows = await deps.db
    .select()
    .from(schema.events)
    .where(and(gte(schema.events.updatedAt, new Date(now - REPUBLISH_LOOKBACK_MS).toISOString())))
    .orderBy(desc(schema.events.updatedAt))
    .limit(REPUBLISH_LIMIT);
  const written: string[] = [];
  for (const row of rows) {
    const stored = await deps.kv.get(kvKeys.event(row.id));
    if (stored !== null && eventVersionOf(stored) === row.version) continue;
    await deps.kv.put(kvKeys.event(row.id), eventBody(eventDocFromRow(row)));
    written.push(row.id);
  }
  return written;
}

/**
 * Rebuilds `events:list` and the version manifest from one D1 batch: one round trip, and both read models
 * from the same snapshot (two separate queries could straddle another organizer's change).
 *
 * The manifest holds every upcoming event's id and version. Readers keep an event's document in their
 * micro-cache for as long as its version matches the manifest, so an isolate refreshes one manifest a
 * second instead of every event it serves. Rebuilt from the source of truth on every organizer change and
 * by the cron trigger, so concurrent writers cannot lose each other's versions for longer than a minute.
 */
export async function publishListAndVersions(deps: CatalogDeps): Promise<void> {
  const [list, versions] = await deps.db.batch([listQuery(deps.db), versionsQuery(deps.db)]);
  await Promise.all([deps.kv.put(kvKeys.list, listBody(list)), deps.kv.put(kvKeys.versions, versionsBody(versions))]);
}

/** Most events in the version manifest (about 40 bytes each); events beyond it fall back to the plain TTL. */
const VERSIONS_LIMIT = 20_000;

/** Upcoming events (those that have not started), the filter of the list and of the manifest. */
const upcoming = () => gt(schema.events.startsAt, new Date().toISOString());

/**
 * Events a buyer can still go to: upcoming and not cancelled (the public and popular lists). The version
 * manifest keeps cancelled events, so every cache learns of the cancellation within its second.
 */
const onOffer = () => and(upcoming(), ne(schema.events.status, "cancelled"));

/** The version manifest's rows: every upcoming event's id and version, latest sale first. */
const versionsQuery = (db: CatalogDb) =>
  db
    .select({ id: schema.events.id, version: schema.events.version })
    .from(schema.events)
    .where(upcoming())
    .orderBy(desc(schema.events.saleStartsAt))
    .limit(VERSIONS_LIMIT);

/** The version manifest's body. */
function versionsBody(rows: { id: string; version: number }[]): string {
  const v: Record<string, number> = {};
  for (const r of rows) v[r.id] = r.version;
  return JSON.stringify({ v });
}

/** Most events in the public list. */
const LIST_LIMIT = 200;

/** Rebuilds `events:list` from D1: upcoming events, soonest sale first. */
async function publishEventList(deps: CatalogDeps): Promise<string> {
  const body = listBody(await listQuery(deps.db));
  await deps.kv.put(kvKeys.list, body);
  return body;
}

/** The list's rows: the LIST_LIMIT upcoming events (not cancelled) with the latest sales. */
const listQuery = (db: CatalogDb) =>
  db.select().from(schema.events).where(onOffer()).orderBy(desc(schema.events.saleStartsAt)).limit(LIST_LIMIT);

/** The list's body: its rows soonest sale first. */
const listBody = (rows: schema.EventRow[]): string => JSON.stringify({ events: rows.reverse().map(summaryOf) });

/** Most events in the popular list. */
const POPULAR_LIMIT = 20;

/**
 * Publishes the popular-events list to KV: upcoming events ranked by recent activity (holds and orders,
 * from the analytics rollups), then by the soonest sale. The catalog serves it when the primary list
 * cannot be built.
 */
export async function publishPopular(deps: CatalogDeps, scores: Map<string, number>): Promise<string[]> {
  const rows = await deps.db.select().from(schema.events).where(onOffer()).limit(1_000);
  rows.sort((a, b) => (scores.get(b.id) ?? 0) - (scores.get(a.id) ?? 0) || a.saleStartsAt.localeCompare(b.saleStartsAt));
  const top = rows.slice(0, POPULAR_LIMIT);
  const events: EventSummary[] = top.map(summaryOf);
  await deps.kv.put(kvKeys.popular, JSON.stringify({ events }));
  return top.map((r) => r.id);
}

/** Micro-cache TTLs of the catalog (documented staleness). */
const CATALOG_MICRO_TTL_MS = 1_000;
const CATALOG_EDGE_TTL_SECONDS = 5;

let edgeCache: Cache | undefined;
/** The shared catalog cache of this isolate. */
export const catalogCache = new ReadThroughCache({
  ttlMs: CATALOG_MICRO_TTL_MS,
  negativeTtlMs: 5_000,
  maxEntries: 20_000,
  get edge() {
    edgeCache ??= typeof caches === "undefined" ? undefined : caches.default;
    return edgeCache;
  },
});

/** What a cached catalog read needs from the request. */
export interface ReadContext {
  deps: CatalogDeps;
  origin: string;
  waitUntil: (p: Promise<unknown>) => void;
}

/**
 * The source of one read model: what every catalog read shares (its KV key, its Cache API key under the
 * request's origin, lifetimes) plus `own` (how to build it, versions, counting). The Cache API key stays a
 * getter, so a micro-cache hit never parses the request URL.
 */
function catalogSource(
  ctx: ReadContext,
  key: string,
  cachePath: string,
  own: Omit<ReadThroughSource, "key" | "cacheUrl" | "edgeTtlSeconds" | "waitUntil" | "kv">,
): ReadThroughSource {
  const shared = {
    key,
    get cacheUrl() {
      return ctx.origin + cachePath;
    },
    edgeTtlSeconds: CATALOG_EDGE_TTL_SECONDS,
    waitUntil: ctx.waitUntil,
    kv: () => ctx.deps.kv.get(key),
  };
  return Object.assign(shared, own);
}

/** The version of the event in a serialized `{ event }` body. */
const eventVersionOf = (body: string): number | undefined => {
  const v = (JSON.parse(body) as { event?: { version?: unknown } }).event?.version;
  return typeof v === "number" ? v : undefined;
};

/**
 * The version manifest through the same cache (one refresh per isolate per second at most, coalesced),
 * parsed once per body. Not counted as a catalog read: it serves reads, it is not one.
 */
async function eventVersions(ctx: ReadContext): Promise<Map<string, number> | null> {
  const { value } = await catalogCache.get(
    catalogSource(ctx, kvKeys.versions, cachePaths.versions, {
      // Built from D1 when KV has none yet (before the first organizer change or cron run); republished in
      // the background, so a refused KV write (one write per second per key) does not fail the read.
      origin: async () => {
        const body = versionsBody(await versionsQuery(ctx.deps.db));
        ctx.waitUntil(ctx.deps.kv.put(kvKeys.versions, body));
        return body;
      },
      counted: false,
    }),
  );
  if (!value) return null;
  return parsedBody(value, parseVersions);
}

const parseVersions = (body: string): Map<string, number> => new Map(Object.entries((JSON.parse(body) as { v: Record<string, number> }).v));

/** The version manifest when this isolate holds it within its lifetime (nothing awaited, not counted). */
function freshVersions(): Map<string, number> | undefined {
  const value = catalogCache.peek(kvKeys.versions);
  return value ? parsedBody(value, parseVersions) : undefined;
}

/**
 * GET /v1/events/:id answered without awaiting anything: the document when this isolate holds it within
 * its lifetime, or past it while the manifest this isolate holds fresh still names its version. The same
 * answers as {@link readEvent}'s first two layers; undefined otherwise.
 */
export const freshEvent = (id: string) => catalogCache.fresh(kvKeys.event(id), (version) => freshVersions()?.get(id) === version);

/** GET /v1/events when this isolate holds it within its lifetime; undefined otherwise. */
export const freshEventList = () => catalogCache.fresh(kvKeys.list);

/**
 * GET /v1/events/:id body through every layer; null when the event does not exist. A cached document
 * past its micro-cache lifetime is kept while the version manifest still names its version.
 */
export function readEvent(ctx: ReadContext, id: string): Promise<{ value: CachedBody | null; layer: CacheLayer }> {
  const key = kvKeys.event(id);
  if (!EVENT_ID.test(id)) return Promise.resolve({ value: null, layer: "micro" });
  return catalogCache.get(
    catalogSource(ctx, key, cachePaths.event(id), {
      versionOf: eventVersionOf,
      isCurrent: async (version) => (await eventVersions(ctx))?.get(id) === version,
      origin: async () => {
        const row = await findEventRow(ctx.deps.db, id);
        if (!row) return null;
        const body = eventBody(eventDocFromRow(row));
        ctx.waitUntil(ctx.deps.kv.put(key, body));
        return body;
      },
    }),
  );
}

/** GET /v1/events body through every layer. */
export function readEventList(ctx: ReadContext): Promise<{ value: CachedBody | null; layer: CacheLayer }> {
  return catalogCache.get(catalogSource(ctx, kvKeys.list, cachePaths.list, { origin: () => publishEventList(ctx.deps) }));
}

const parseEventDoc = (body: string): EventDoc => (JSON.parse(body) as { event: EventDoc }).event;

/** The event document in a cached `{ event }` body, parsed once per cached value (every reader shares it). */
export const eventDocOf = (value: CachedBody): EventDoc => parsedBody(value, parseEventDoc);

/** The event document for domain code (holds, queue): through the same cache, parsed. */
export async function getEventDoc(ctx: ReadContext, id: string): Promise<EventDoc | null> {
  const { value } = await readEvent(ctx, id);
  return value ? eventDocOf(value) : null;
}

/** Evicts an event (with the list and the version manifest) from this isolate and data centre after a change. */
export async function invalidateEvent(origin: string, id: string): Promise<void> {
  await Promise.all([
    catalogCache.invalidate(kvKeys.event(id), origin + cachePaths.event(id)),
    catalogCache.invalidate(kvKeys.list, origin + cachePaths.list),
    catalogCache.invalidate(kvKeys.versions, origin + cachePaths.versions),
  ]);
}

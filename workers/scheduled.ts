import { and, asc, eq, gt, gte, lte } from "drizzle-orm";
import { catalogDb, eventDocFromRow, publishListAndVersions, publishPopular, republishChangedEvents } from "../lib/catalog";
import { cronState, events as eventsTable, reconciliationRuns } from "../lib/db/catalog-schema";
import { log } from "../lib/log";
import { metric } from "../lib/metric-catalog";
import { orderStores, shardNames } from "../lib/order-store";
import { type ReconciliationResult, reconcileEvent } from "../lib/reconcile";
import { activityScores, rollUp } from "../lib/rollups";
import { rescueParkedDeadLetters } from "../queues/dead-letters";

/** Minutes of raw events each rollup run recomputes (late queue deliveries are caught). */
const ROLLUP_LOOKBACK_MINUTES = 10;
/**
 * Inventory DOs reconciliation may ask per run: the work of one run is bounded whatever the number of events
 * (an event has at most MAX_INVENTORY_OBJECTS of them), and a cursor carries the walk over to the next run.
 */
const RECONCILE_OBJECT_BUDGET = 300;
/** Events reconciled per run at most (each costs a WaitingRoom call and one query per order shard). */
export const RECONCILE_EVENTS_PER_RUN = 100;
/** Events read from the catalog per page of the walk. */
const RECONCILE_PAGE = 50;
const CURSOR_KEY = "reconcile_cursor";

/**
 * Reconciles the events on sale (sale opened, show not long over) and records any discrepancy. The events
 * are walked in id order from where the previous run stopped (`cron_state.reconcile_cursor`), wrapping
 * around at the end, until the run has asked {@link RECONCILE_OBJECT_BUDGET} Inventory DOs or taken
 * {@link RECONCILE_EVENTS_PER_RUN} events: every event is
 * reached however many there are. Per event only the DOs that reported sales to its WaitingRoom (and the
 * owners of stored orders) are asked.
 */
export async function reconcileActiveEvents(env: Env, now: Date, budget = RECONCILE_OBJECT_BUDGET): Promise<ReconciliationResult[]> {
  const db = catalogDb(env.CATALOG_DB);
  const onSale = and(
    lte(eventsTable.saleStartsAt, now.toISOString()),
    gte(eventsTable.startsAt, new Date(now.getTime() - 86_400_000).toISOString()),
  );
  const saved = await db.select().from(cronState).where(eq(cronState.k, CURSOR_KEY));
  const start = saved[0]?.v ?? "";
  const resolver = orderStores(env);
  const stores = shardNames(env).map(resolver);
  const results: ReconciliationResult[] = [];
  let cursor = start;
  let wrapped = false;
  try {
    walk: for (;;) {
      const rows = await db
        .select()
        .from(eventsTable)
        .where(and(onSale, gt(eventsTable.id, cursor), wrapped ? lte(eventsTable.id, start) : undefined))
        .orderBy(asc(eventsTable.id))
        .limit(RECONCILE_PAGE);
      for (const row of rows) {
        const event = eventDocFromRow(row);
        const sold = await env.WAITING_ROOM.get(env.WAITING_ROOM.idFromName(event.id)).soldLocations();
        // Stop before an event that would overrun the budget, unless it is the first of this run (an event
        // is never skipped for being large: MAX_INVENTORY_OBJECTS bounds it).
        if (sold.length > budget && results.length) break walk;
        const r = await reconcileEvent({ inventory: env.INVENTORY, stores }, event, { now: now.getTime(), sold });
        budget -= r.objectsAsked;
        cursor = row.id;
        results.push(r);
        if (r.missing.length || r.extra.length || r.duplicated.length) {
          log.error("reconciliation found discrepancies", { ...r });
          const { objectsAsked: _, ...found } = r;
          await db.insert(reconciliationRuns).values({ id: crypto.randomUUID(), ranAt: now.toISOString(), ...found });
        }
        if (budget <= 0 || results.length >= RECONCILE_EVENTS_PER_RUN) break walk;
      }
      if (rows.length === RECONCILE_PAGE) continue;
      // The end of the list: start again from the beginning, up to where this run started.
      if (wrapped || start === "") {
        cursor = "";
        break;
      }
      wrapped = true;
      cursor = "";
    }
  } finally {
    await resolver.close();
    await db
      .insert(cronState)
      .values({ k: CURSOR_KEY, v: cursor })
      .onConflictDoUpdate({ target: cronState.k, set: { v: cursor } });
  }
  const sum = (k: "missing" | "extra" | "duplicated") => results.reduce((n, x) => n + x[k].length, 0);
  metric.reconciliationDiscrepancies.set({ kind: "missing" }, sum("missing"));
  metric.reconciliationDiscrepancies.set({ kind: "extra" }, sum("extra"));
  metric.reconciliationDiscrepancies.set({ kind: "duplicated" }, sum("duplicated"));
  return results;
}

/**
 * The cron trigger (every minute): analytics rollups, the catalog in KV (documents of recently changed
 * events whose publish failed, the list, the version manifest) and popular events, and the
 * reconciliation of sales against the shards. Each step runs even if another fails; failures are logged,
 * counted, and rethrown together so the invocation is marked failed.
 */
export async function handleScheduled(controller: ScheduledController, env: Env, _ctx: ExecutionContext): Promise<void> {
  const now = new Date(controller.scheduledTime);
  const db = catalogDb(env.CATALOG_DB);
  const deps = { db, kv: env.CATALOG_KV };
  const steps: [string, () => Promise<unknown>][] = [
    ["rollups", () => rollUp(env.CATALOG_DB, new Date(now.getTime() - ROLLUP_LOOKBACK_MINUTES * 60_000), new Date(now.getTime() + 60_000))],
    ["event-docs", () => republishChangedEvents(deps, now.getTime())],
    ["event-list", () => publishListAndVersions(deps)],
    ["popular", async () => publishPopular(deps, await activityScores(db, now))],
    ["reconciliation", () => reconcileActiveEvents(env, now)],
    ["dead-letter-rescue", () => rescueParkedDeadLetters(env)],
  ];
  const failures: unknown[] = [];
  for (const [name, run] of steps) {
    const started = Date.now();
    try {
      await run();
      metric.cronStepDurationMs.observe({ step: name }, Date.now() - started);
    } catch (err) {
      failures.push(err);
      metric.cronFailures.inc({ step: name });
      log.error("cron step failed", { step: name, error: String(err) });
    }
  }
  if (failures.length) throw new AggregateError(failures, `${failures.length} cron step(s) failed`);
}

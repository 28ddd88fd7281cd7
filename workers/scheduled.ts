import { and, gte, lte } from "drizzle-orm";
import { catalogDb, eventDocFromRow, publishListAndVersions, publishPopular, republishChangedEvents } from "../lib/catalog";
import { events as eventsTable, reconciliationRuns } from "../lib/db/catalog-schema";
import { log } from "../lib/log";
import { metric } from "../lib/metric-catalog";
import { orderStores, shardNames } from "../lib/order-store";
import { type ReconciliationResult, reconcileEvent } from "../lib/reconcile";
import { activityScores, rollUp } from "../lib/rollups";
import { rescueParkedDeadLetters } from "../queues/dead-letters";

/** Minutes of raw events each rollup run recomputes (late queue deliveries are caught). */
const ROLLUP_LOOKBACK_MINUTES = 10;
/** Events reconciled per run at most. */
const RECONCILE_LIMIT = 50;

/** Reconciles the events on sale (sale opened, show not long over) and records any discrepancy. */
async function reconcileActiveEvents(env: Env, now: Date): Promise<ReconciliationResult[]> {
  const db = catalogDb(env.CATALOG_DB);
  const rows = await db
    .select()
    .from(eventsTable)
    .where(
      and(lte(eventsTable.saleStartsAt, now.toISOString()), gte(eventsTable.startsAt, new Date(now.getTime() - 86_400_000).toISOString())),
    )
    .limit(RECONCILE_LIMIT);
  const resolver = orderStores(env);
  const stores = shardNames(env).map(resolver);
  const results: ReconciliationResult[] = [];
  try {
    for (const row of rows) {
      const r = await reconcileEvent({ inventory: env.INVENTORY, stores }, eventDocFromRow(row), { now: now.getTime() });
      results.push(r);
      if (r.missing.length || r.extra.length || r.duplicated.length) {
        log.error("reconciliation found discrepancies", { ...r });
        await db.insert(reconciliationRuns).values({ id: crypto.randomUUID(), ranAt: now.toISOString(), ...r });
      }
    }
  } finally {
    await resolver.close();
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

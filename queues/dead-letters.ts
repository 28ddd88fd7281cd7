import { and, asc, desc, eq, inArray, type SQL } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { queueRetryDelaySeconds } from "../lib/backoff";
import { chunk, chunkByWeight } from "../lib/chunk";
import { countingD1 } from "../lib/d1-counter";
import { type DeadLetterRow, deadLetters } from "../lib/db/catalog-schema";
import { log } from "../lib/log";
import { metric } from "../lib/metric-catalog";
import { count } from "./consume";

/** The queues Breakwater consumes, by name, and the binding that produces to each. */
export const QUEUES = {
  "breakwater-orders": "ORDERS_QUEUE",
  "breakwater-notifications": "NOTIFICATIONS_QUEUE",
  "breakwater-analytics": "ANALYTICS_QUEUE",
  "breakwater-refunds": "REFUNDS_QUEUE",
} as const satisfies Record<string, keyof Env>;
type QueueName = keyof typeof QUEUES;
/** The producer bindings of the queues. */
export type QueueBinding = (typeof QUEUES)[QueueName];

/** The original queue of a dead-letter queue (`breakwater-orders-dlq` → `breakwater-orders`). */
export const originalQueue = (name: string): string => name.replace(/-dlq$/, "");

const db = (catalog: D1Database) => drizzle(countingD1(catalog, "catalog"));

/**
 * Records one message as dead, under its original queue (idempotent per queue and message id: a DLQ
 * redelivery does not make a second row). Invalid messages are recorded here by the consumers at once;
 * messages that exhausted max_retries arrive through the `*-dlq` queues.
 */
export async function recordDeadLetter(
  catalog: D1Database,
  queue: string,
  msg: Pick<Message, "id" | "body" | "attempts">,
  error: string,
): Promise<void> {
  await db(catalog)
    .insert(deadLetters)
    .values({
      id: `${originalQueue(queue)}:${msg.id}`,
      queue: originalQueue(queue),
      body: msg.body as object,
      attempts: msg.attempts,
      firstFailedAt: new Date().toISOString(),
      lastError: error.slice(0, 2000),
    })
    .onConflictDoNothing();
  count(queue, "dead_lettered");
  log.error("dead letter", { queue: originalQueue(queue), messageId: msg.id, attempts: msg.attempts, error: error.slice(0, 300) });
}

/** `max_retries` of the `*-dlq` consumers (wrangler.toml): past it the platform drops the message. */
export const DLQ_MAX_RETRIES = 10;
/** From this attempt on, a dead letter that D1 cannot take goes to the last-resort sink instead. */
export const LAST_RESORT_FROM_ATTEMPT = 7;
/** KV key prefix of the last-resort sink. */
export const LAST_RESORT_PREFIX = "dead-letter:";

/** What the DLQ consumer writes to: D1 (the admin routes' table) and, as a last resort, KV. */
export interface DeadLetterStores {
  catalog: D1Database;
  lastResort: Pick<KVNamespace, "put">;
}

/** A dead letter parked in the last-resort sink. */
interface ParkedDeadLetter {
  queue: string;
  id: string;
  body: unknown;
  attempts: number;
  error: string;
  parkedAt: string;
}

/**
 * Consumer of the `*-dlq` queues: records every message for the admin routes, then acknowledges it. A
 * message whose record fails is retried with backoff (the DLQ consumers have their own max_retries); from
 * attempt {@link LAST_RESORT_FROM_ATTEMPT} on it is parked in KV instead (the cron moves it into D1 once
 * D1 is back), counted in `breakwater_dead_letters_last_resort_total` and logged. Only when KV refuses it
 * too on the last attempt is it counted in `breakwater_dead_letters_lost_total`, with its body in the log
 * (docs/prometheus-alerts.yml alerts on both): nothing is dropped silently.
 */
export async function consumeDeadLetters(batch: MessageBatch, stores: DeadLetterStores): Promise<void> {
  const catalog = stores.catalog;
  for (const msg of batch.messages) {
    try {
      await recordDeadLetter(
        catalog,
        batch.queue,
        msg,
        `exhausted retries after ${msg.attempts} attempt(s) in ${originalQueue(batch.queue)}`,
      );
      msg.ack();
    } catch (err) {
      if (msg.attempts >= LAST_RESORT_FROM_ATTEMPT && (await park(stores.lastResort, batch.queue, msg, String(err)))) {
        msg.ack();
        continue;
      }
      if (msg.attempts >= DLQ_MAX_RETRIES) {
        metric.deadLettersLost.inc({ queue: originalQueue(batch.queue) });
        log.error("dead letter could not be recorded or parked: it may be lost", {
          queue: batch.queue,
          messageId: msg.id,
          attempts: msg.attempts,
          error: String(err),
          body: msg.body,
        });
      } else log.error("dead letter could not be recorded; retrying", { queue: batch.queue, messageId: msg.id, error: String(err) });
      msg.retry({ delaySeconds: queueRetryDelaySeconds(msg.attempts) });
    }
  }
}

/** Parks a dead letter in the last-resort sink; false when that fails too. */
async function park(sink: Pick<KVNamespace, "put">, queue: string, msg: Message, error: string): Promise<boolean> {
  const parked: ParkedDeadLetter = {
    queue: originalQueue(queue),
    id: msg.id,
    body: msg.body,
    attempts: msg.attempts,
    error: `D1 unavailable for the dead letter: ${error}`.slice(0, 2000),
    parkedAt: new Date().toISOString(),
  };
  try {
    await sink.put(`${LAST_RESORT_PREFIX}${parked.queue}:${msg.id}`, JSON.stringify(parked));
  } catch (kvErr) {
    log.error("dead letter could not be parked in KV", { queue, messageId: msg.id, error: String(kvErr) });
    return false;
  }
  metric.deadLettersLastResort.inc({ queue: parked.queue });
  log.error("dead letter parked in the last-resort sink (KV)", { queue: parked.queue, messageId: msg.id });
  return true;
}

/**
 * Moves dead letters parked in KV into D1 (cron): each is recorded like any dead letter (idempotent per
 * queue and id), then deleted from KV. At most `limit` per run. Returns how many moved.
 */
export async function rescueParkedDeadLetters(env: Pick<Env, "CATALOG_DB" | "CATALOG_KV">, limit = 100): Promise<number> {
  const { keys } = await env.CATALOG_KV.list({ prefix: LAST_RESORT_PREFIX, limit });
  let moved = 0;
  for (const { name } of keys) {
    const parked = await env.CATALOG_KV.get<ParkedDeadLetter>(name, "json");
    if (parked)
      await recordDeadLetter(env.CATALOG_DB, parked.queue, { id: parked.id, body: parked.body, attempts: parked.attempts }, parked.error);
    await env.CATALOG_KV.delete(name);
    moved++;
  }
  return moved;
}

/** Dead letters, newest first. */
export async function listDeadLetters(
  catalog: D1Database,
  filter: { queue?: string; status?: "dead" | "replayed"; limit: number },
): Promise<DeadLetterRow[]> {
  const where = and(
    filter.queue ? eq(deadLetters.queue, filter.queue) : undefined,
    filter.status ? eq(deadLetters.status, filter.status) : undefined,
  );
  return db(catalog).select().from(deadLetters).where(where).orderBy(desc(deadLetters.firstFailedAt)).limit(filter.limit);
}

/** At most this many dead letters are replayed per call (the admin repeats the call for more). */
const REPLAY_MAX = 1000;
/** Rows per statement and messages per `sendBatch`: D1 binds ≤ 100 parameters, Queues take ≤ 100 messages. */
const REPLAY_CHUNK = 90;
/** Bytes per `sendBatch` (Queues: 256 KB per batch), with room for per-message overhead. */
const REPLAY_BATCH_BYTES = 200_000;

/** Splits rows into sendable groups: at most REPLAY_CHUNK messages and about REPLAY_BATCH_BYTES each. */
function sendGroups(rows: DeadLetterRow[]): DeadLetterRow[][] {
  return chunkByWeight(rows, REPLAY_CHUNK, REPLAY_BATCH_BYTES, (row) => JSON.stringify(row.body).length + 100);
}

/**
 * Sends dead letters (status `dead`) back to their original queue and marks them replayed: the ones named
 * by `ids`, or all of a queue's, oldest first (at most {@link REPLAY_MAX} per call). Sent with `sendBatch`
 * and marked after each send, so a failure part-way leaves the rest `dead` for the next call. Consumers
 * are idempotent, so replaying something that had in fact been stored changes nothing. Returns the ids
 * replayed.
 */
export async function replayDeadLetters(
  env: Pick<Env, "CATALOG_DB" | QueueBinding>,
  sel: { ids?: string[]; queue?: string },
): Promise<string[]> {
  const d = db(env.CATALOG_DB);
  const base = [eq(deadLetters.status, "dead"), ...(sel.queue ? [eq(deadLetters.queue, sel.queue)] : [])];
  const select = (...extra: SQL[]) =>
    d
      .select()
      .from(deadLetters)
      .where(and(...base, ...extra))
      .orderBy(asc(deadLetters.firstFailedAt))
      .limit(REPLAY_MAX);
  const rows: DeadLetterRow[] = [];
  if (sel.ids?.length) for (const ids of chunk(sel.ids, REPLAY_CHUNK)) rows.push(...(await select(inArray(deadLetters.id, ids))));
  else rows.push(...(await select()));
  const replayed: string[] = [];
  for (const [queue, binding] of Object.entries(QUEUES) as [QueueName, QueueBinding][]) {
    for (const group of sendGroups(rows.filter((r) => r.queue === queue).slice(0, REPLAY_MAX - replayed.length))) {
      await env[binding].sendBatch(group.map((r) => ({ body: r.body, contentType: "json" as const })));
      const ids = group.map((r) => r.id);
      await d.update(deadLetters).set({ status: "replayed", replayedAt: new Date().toISOString() }).where(inArray(deadLetters.id, ids));
      replayed.push(...ids);
    }
  }
  return replayed;
}

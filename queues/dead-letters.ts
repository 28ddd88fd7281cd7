import { and, desc, eq, inArray } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { countingD1 } from "../lib/d1-counter";
import { type DeadLetterRow, deadLetters } from "../lib/db/catalog-schema";
import { metrics } from "../lib/metrics";

/** The queues Breakwater consumes, by name, and the binding that produces to each. */
export const QUEUES = {
  "breakwater-orders": "ORDERS_QUEUE",
  "breakwater-notifications": "NOTIFICATIONS_QUEUE",
  "breakwater-analytics": "ANALYTICS_QUEUE",
} as const satisfies Record<string, keyof Env>;
export type QueueName = keyof typeof QUEUES;

/** The original queue of a dead-letter queue (`breakwater-orders-dlq` → `breakwater-orders`). */
export const originalQueue = (name: string): string => name.replace(/-dlq$/, "");

const db = (catalog: D1Database) => drizzle(countingD1(catalog, "catalog"));

/** Records one message as dead (idempotent per queue and message id). */
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
  metrics.inc(
    "breakwater_queue_messages_total",
    { queue: originalQueue(queue).replace(/^breakwater-/, ""), action: "dead_lettered" },
    1,
    "Queue messages by outcome",
  );
  console.error(
    JSON.stringify({
      level: "error",
      msg: "dead letter",
      queue: originalQueue(queue),
      messageId: msg.id,
      attempts: msg.attempts,
      error: error.slice(0, 300),
    }),
  );
}

/** Consumer of the `*-dlq` queues: records every message for the admin routes, then acknowledges it. */
export async function consumeDeadLetters(batch: MessageBatch, catalog: D1Database): Promise<void> {
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
      console.error(
        JSON.stringify({
          level: "error",
          msg: "dead letter could not be recorded; retrying",
          queue: batch.queue,
          messageId: msg.id,
          error: String(err),
        }),
      );
      msg.retry({ delaySeconds: 10 });
    }
  }
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

/**
 * Sends dead letters back to their original queue and marks them replayed. Consumers are idempotent, so a
 * replay of something that had in fact been stored changes nothing. Returns the ids replayed.
 */
export async function replayDeadLetters(env: Env, sel: { ids?: string[]; queue?: string }): Promise<string[]> {
  const d = db(env.CATALOG_DB);
  const conditions = [eq(deadLetters.status, "dead")];
  if (sel.ids?.length) conditions.push(inArray(deadLetters.id, sel.ids));
  if (sel.queue) conditions.push(eq(deadLetters.queue, sel.queue));
  const rows = await d
    .select()
    .from(deadLetters)
    .where(and(...conditions))
    .limit(1000);
  const replayed: string[] = [];
  for (const row of rows) {
    const binding = QUEUES[row.queue as QueueName];
    if (!binding) continue;
    await env[binding].send(row.body, { contentType: "json" });
    await d.update(deadLetters).set({ status: "replayed", replayedAt: new Date().toISOString() }).where(eq(deadLetters.id, row.id));
    replayed.push(row.id);
  }
  return replayed;
}

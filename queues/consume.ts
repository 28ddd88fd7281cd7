import type { z } from "zod";
import { queueRetryDelaySeconds } from "../lib/backoff";
import { metrics } from "../lib/metrics";

/** Records a message that can never succeed (a dead letter) — the consumers' shared dependency. */
export type DeadLetterSink = (queue: string, msg: Message, error: string) => Promise<void>;

/**
 * Parses a message body with its queue's schema. An invalid message cannot be fixed by retrying: it is
 * recorded as a dead letter, acknowledged and counted, and `null` is returned.
 */
export async function parseOrDeadLetter<S extends z.ZodType>(
  schema: S,
  queue: string,
  msg: Message,
  deadLetter: DeadLetterSink,
): Promise<z.output<S> | null> {
  const parsed = schema.safeParse(msg.body);
  if (parsed.success) return parsed.data;
  await deadLetter(queue, msg, `invalid message: ${parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`);
  metrics.inc(
    "breakwater_queue_messages_total",
    { queue: queue.replace(/^breakwater-/, ""), action: "invalid" },
    1,
    "Queue messages by outcome",
  );
  msg.ack();
  return null;
}

/** Retries a message later with exponential backoff and full jitter, logging why and counting it. */
export function retryLater(queue: string, msg: Message, context: Record<string, unknown>, err: unknown): void {
  const delaySeconds = queueRetryDelaySeconds(msg.attempts);
  console.error(
    JSON.stringify({
      level: "error",
      msg: "message failed; retrying",
      queue,
      messageId: msg.id,
      attempts: msg.attempts,
      delaySeconds,
      ...context,
      error: String(err),
    }),
  );
  metrics.inc(
    "breakwater_queue_messages_total",
    { queue: queue.replace(/^breakwater-/, ""), action: "retried" },
    1,
    "Queue messages by outcome",
  );
  msg.retry({ delaySeconds });
}

/** Acknowledges a message and counts it. */
export function acknowledge(queue: string, msg: Message): void {
  metrics.inc(
    "breakwater_queue_messages_total",
    { queue: queue.replace(/^breakwater-/, ""), action: "acked" },
    1,
    "Queue messages by outcome",
  );
  msg.ack();
}

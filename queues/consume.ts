import type { z } from "zod";
import { DEFAULT_QUEUE_RETRY, ORDERS_QUEUE_RETRY, type QueueRetryPolicy, queueRetryDelaySeconds } from "../lib/backoff";
import { log } from "../lib/log";
import { metric } from "../lib/metric-catalog";

/** Records a message that can never succeed (a dead letter) — the consumers' shared dependency. */
export type DeadLetterSink = (queue: string, msg: Message, error: string) => Promise<void>;

/**
 * Parses a message body with its queue's schema. An invalid message cannot be fixed by retrying, so it is
 * recorded as a dead letter at once (visible to the admin routes without waiting out max_retries),
 * acknowledged and counted, and `null` is returned. If the dead letter cannot be recorded (the catalog is
 * down), the message is retried with backoff instead: after max_retries Queues moves it to the
 * dead-letter queue, whose consumer records it then. Either way it is never lost and never loops forever.
 */
export async function parseOrDeadLetter<S extends z.ZodType>(
  schema: S,
  queue: string,
  msg: Message,
  deadLetter: DeadLetterSink,
): Promise<z.output<S> | null> {
  const parsed = schema.safeParse(msg.body);
  if (parsed.success) return parsed.data;
  const error = `invalid message: ${parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`;
  try {
    await deadLetter(queue, msg, error);
  } catch (err) {
    retryLater(queue, msg, { invalid: error.slice(0, 300) }, err);
    return null;
  }
  count(queue, "invalid");
  msg.ack();
  return null;
}

/**
 * The retry policy of a queue: orders and refunds wait longer, so a shard or payment-provider outage is
 * outlasted rather than raced through.
 */
export const retryPolicyFor = (queue: string): QueueRetryPolicy =>
  queue === "breakwater-orders" || queue === "breakwater-refunds" ? ORDERS_QUEUE_RETRY : DEFAULT_QUEUE_RETRY;

/** The backoff of a message's next try: exponential with jitter, by its attempts and its queue's policy. */
const retryDelay = (queue: string, msg: Message): number => queueRetryDelaySeconds(msg.attempts, { policy: retryPolicyFor(queue) });

/** Retries a message later with exponential backoff and jitter (the queue's policy), logging why and counting it. */
export function retryLater(queue: string, msg: Message, context: Record<string, unknown>, err: unknown): void {
  const delaySeconds = retryDelay(queue, msg);
  log.error("message failed; retrying", { queue, messageId: msg.id, attempts: msg.attempts, delaySeconds, ...context, error: String(err) });
  count(queue, "retried");
  msg.retry({ delaySeconds });
}

/**
 * Retries messages that failed together (one shard write for a batch, one hand-off) with one log line for
 * all of them: each message waits its own backoff (by its attempts), and `ids` names them in the line. An
 * outage then logs once per batch, not once per message.
 */
export function retryAllLater(
  queue: string,
  msgs: readonly { msg: Message; id: string }[],
  context: Record<string, unknown>,
  err: unknown,
): void {
  if (!msgs.length) return;
  const attempts = msgs.map(({ msg }) => msg.attempts);
  log.error("messages failed; retrying", {
    queue,
    count: msgs.length,
    ids: msgs.map((m) => m.id),
    attempts: { min: Math.min(...attempts), max: Math.max(...attempts) },
    ...context,
    error: String(err),
  });
  count(queue, "retried", msgs.length);
  for (const { msg } of msgs) msg.retry({ delaySeconds: retryDelay(queue, msg) });
}

/** Acknowledges a message and counts it. */
export function acknowledge(queue: string, msg: Message): void {
  count(queue, "acked");
  msg.ack();
}

/** Counts queue messages by outcome (`breakwater_queue_messages_total`; `queue` without the prefix). */
export function count(queue: string, action: "sent" | "acked" | "retried" | "invalid" | "dead_lettered", n = 1): void {
  metric.queueMessages.inc({ queue: queue.replace(/^breakwater-|-dlq$/g, ""), action }, n);
}

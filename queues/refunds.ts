import type { InventoryNamespace } from "../lib/holds";
import { log } from "../lib/log";
import { refundRequestMessage } from "../lib/order";
import { refundForCancellation } from "../lib/refunds";
import { acknowledge, type DeadLetterSink, parseOrDeadLetter, retryLater } from "./consume";

/** What the refunds consumer needs. */
export interface RefundsConsumerDeps {
  inventory: InventoryNamespace;
  deadLetter: DeadLetterSink;
}

/**
 * The refunds queue: one message per recorded order of a cancelled event (queued by its Inventory DO).
 * Each refunds what is left of its order, once (the refund key is per order, the DO's step and the
 * provider's refund are idempotent). A message whose refund the provider has not confirmed (or whose DO
 * failed) is retried with exponential backoff and jitter; after max_retries it goes to the dead-letter
 * queue, whose consumer records it for the admin routes (the DO's alarm still retries a recorded refund).
 * Invalid messages are dead letters at once.
 */
export async function consumeRefunds(batch: MessageBatch, deps: RefundsConsumerDeps): Promise<void> {
  const messages = [...batch.messages];
  // At most REFUND_CONCURRENCY refunds in flight per batch (each is a few provider calls: stay far below its rate limit).
  await Promise.all(
    Array.from({ length: REFUND_CONCURRENCY }, async () => {
      for (let msg = messages.shift(); msg; msg = messages.shift()) await refundOne(batch.queue, msg, deps);
    }),
  );
}

/** Refunds in flight at once per batch. */
const REFUND_CONCURRENCY = 10;

/** Refunds one order: acknowledged once the provider confirmed (or nothing was left), else retried with backoff. */
async function refundOne(queue: string, msg: Message, deps: RefundsConsumerDeps): Promise<void> {
  const m = await parseOrDeadLetter(refundRequestMessage, queue, msg, deps.deadLetter);
  if (!m) return;
  try {
    const result = await refundForCancellation(deps.inventory, m);
    log.info("cancellation refund", { orderId: m.orderId, result });
    acknowledge(queue, msg);
  } catch (err) {
    retryLater(queue, msg, { orderId: m.orderId }, err);
  }
}

import { orderStores, shardNames } from "../lib/order-store";
import { consumeAnalytics } from "./analytics";
import { consumeDeadLetters, recordDeadLetter } from "./dead-letters";
import { consumeNotifications, outboxMail, qstashPublisher } from "./notifications";
import { consumeOrders } from "./orders";

/** The Worker's `queue()` handler: one consumer per queue, chosen by `batch.queue`. */
export async function handleQueue(batch: MessageBatch, env: Env, ctx: ExecutionContext): Promise<void> {
  const deadLetter = (queue: string, msg: Message, error: string) => recordDeadLetter(env.CATALOG_DB, queue, msg, error);
  const store = orderStores(env);
  try {
    await dispatch(batch, env, store, deadLetter);
  } finally {
    ctx.waitUntil(store.close());
  }
}

async function dispatch(
  batch: MessageBatch,
  env: Env,
  store: ReturnType<typeof orderStores>,
  deadLetter: (queue: string, msg: Message, error: string) => Promise<void>,
): Promise<void> {
  switch (batch.queue) {
    case "breakwater-orders":
      return consumeOrders(batch, {
        shards: shardNames(env),
        store,
        notifications: env.NOTIFICATIONS_QUEUE,
        analytics: env.ANALYTICS_QUEUE,
        deadLetter,
      });
    case "breakwater-notifications":
      return consumeNotifications(batch, {
        mail: outboxMail(store),
        webhooks: env.ORGANIZER_WEBHOOK_URL ? qstashPublisher(env.QSTASH_TOKEN, env.QSTASH_URL || undefined) : null,
        webhookUrl: env.ORGANIZER_WEBHOOK_URL || null,
        deadLetter,
      });
    case "breakwater-analytics":
      return consumeAnalytics(batch, { catalog: env.CATALOG_DB, deadLetter });
    case "breakwater-orders-dlq":
    case "breakwater-notifications-dlq":
    case "breakwater-analytics-dlq":
      return consumeDeadLetters(batch, env.CATALOG_DB);
    default:
      console.error(
        JSON.stringify({ level: "error", msg: "batch from an unknown queue; retrying", queue: batch.queue, size: batch.messages.length }),
      );
      batch.retryAll({ delaySeconds: 60 });
  }
}

import { config } from "../lib/config";
import { parseLocatedId } from "../lib/hold-id";
import { inventoryStub } from "../lib/holds";
import { log } from "../lib/log";
import { outboxMail } from "../lib/mail";
import { mailSender } from "../lib/mail-sender";
import { orderStores, shardNames } from "../lib/order-store";
import { catalogOrganizerOf } from "../lib/organizer-webhooks";
import { qstashPublisher } from "../lib/webhooks";
import { consumeAnalytics } from "./analytics";
import type { DeadLetterSink } from "./consume";
import { consumeDeadLetters, recordDeadLetter } from "./dead-letters";
import { consumeNotifications } from "./notifications";
import { consumeOrders } from "./orders";
import { consumeRefunds } from "./refunds";

/** Confirms stored orders to the Inventory DOs that recorded them (one call per DO). */
async function confirmStored(inventory: Env["INVENTORY"], orderIds: string[]): Promise<void> {
  const byObject = new Map<string, { loc: NonNullable<ReturnType<typeof parseLocatedId>>; ids: string[] }>();
  for (const id of orderIds) {
    const loc = parseLocatedId("ord", id);
    if (!loc) continue;
    const key = `${loc.eventId}:${loc.sectionId}:${loc.shard}`;
    const entry = byObject.get(key) ?? { loc, ids: [] };
    entry.ids.push(id);
    byObject.set(key, entry);
  }
  await Promise.all([...byObject.values()].map(({ loc, ids }) => inventoryStub(inventory, loc).confirmStored(ids)));
}

/** Confirms refunds stored in their shards to the Inventory DOs that recorded them (one call per DO). */
async function confirmRefunds(inventory: Env["INVENTORY"], refunds: { orderId: string; refundKey: string }[]): Promise<void> {
  const byObject = new Map<string, { loc: NonNullable<ReturnType<typeof parseLocatedId>>; keys: string[] }>();
  for (const r of refunds) {
    const loc = parseLocatedId("ord", r.orderId);
    if (!loc) continue;
    const key = `${loc.eventId}:${loc.sectionId}:${loc.shard}`;
    const entry = byObject.get(key) ?? { loc, keys: [] };
    entry.keys.push(r.refundKey);
    byObject.set(key, entry);
  }
  await Promise.all([...byObject.values()].map(({ loc, keys }) => inventoryStub(inventory, loc).confirmRefunds(keys)));
}

/**
 * The Worker's `queue()` handler: one consumer per queue, chosen by `batch.queue`. The order stores are
 * opened only for the queues that write to the shards, and released when the batch is done.
 */
export async function handleQueue(batch: MessageBatch, env: Env, ctx: ExecutionContext): Promise<void> {
  const deadLetter: DeadLetterSink = (queue, msg, error) => recordDeadLetter(env.CATALOG_DB, queue, msg, error);
  switch (batch.queue) {
    case "breakwater-orders":
    case "breakwater-notifications": {
      const cfg = config(env);
      const store = orderStores(env);
      try {
        if (batch.queue === "breakwater-orders")
          await consumeOrders(batch, {
            shards: shardNames(env),
            store,
            notifications: env.NOTIFICATIONS_QUEUE,
            analytics: env.ANALYTICS_QUEUE,
            deadLetter,
            confirmStored: (ids) => confirmStored(env.INVENTORY, ids),
            confirmRefunds: (r) => confirmRefunds(env.INVENTORY, r),
          });
        else
          await consumeNotifications(batch, {
            mail: outboxMail(store),
            sender: mailSender(env, cfg.DEV_AUTH),
            baseUrl: cfg.PUBLIC_BASE_URL,
            signingSecret: env.SIGNING_SECRET,
            webhooks: cfg.ORGANIZER_WEBHOOK_URL ? qstashPublisher(env.QSTASH_TOKEN, cfg.QSTASH_URL) : null,
            webhookUrl: cfg.ORGANIZER_WEBHOOK_URL ?? null,
            organizers: {
              kv: env.CATALOG_KV,
              organizerOf: catalogOrganizerOf(env.CATALOG_DB),
              publisher: qstashPublisher(env.QSTASH_TOKEN, cfg.QSTASH_URL),
            },
            deadLetter,
          });
      } finally {
        ctx.waitUntil(store.close());
      }
      return;
    }
    case "breakwater-analytics":
      return consumeAnalytics(batch, { catalog: env.CATALOG_DB, deadLetter });
    case "breakwater-refunds":
      return consumeRefunds(batch, { inventory: env.INVENTORY, deadLetter });
    case "breakwater-orders-dlq":
    case "breakwater-notifications-dlq":
    case "breakwater-analytics-dlq":
    case "breakwater-refunds-dlq":
      return consumeDeadLetters(batch, { catalog: env.CATALOG_DB, lastResort: env.CATALOG_KV });
    default:
      // A queue bound in wrangler.toml without a consumer here: keep its messages (they reach its DLQ).
      log.error("batch from an unknown queue; retrying", { queue: batch.queue, size: batch.messages.length });
      batch.retryAll({ delaySeconds: 60 });
  }
}

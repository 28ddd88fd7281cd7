import { handleQueue } from "../queues";
import { app } from "./app";
import { handleScheduled } from "./scheduled";

export { CustomerLedger } from "../durable-objects/customer-ledger";
export { Inventory } from "../durable-objects/inventory";
export { Limiter } from "../durable-objects/limiter";
export { WaitingRoom } from "../durable-objects/waiting-room";

/** The Worker: the Hono app for HTTP, queue consumers, and the cron trigger. */
export default {
  fetch: app.fetch,
  queue: handleQueue,
  scheduled: handleScheduled,
} satisfies ExportedHandler<Env>;

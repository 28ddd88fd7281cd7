import { type Config, config } from "../lib/config";
import { log } from "../lib/log";
import { metrics } from "../lib/metrics";
import { ApiError, problemResponse } from "../lib/problem";
import { handleQueue } from "../queues";
import { app } from "./app";
import { answerCachedRead } from "./cached-reads";
import { handleScheduled } from "./scheduled";

export { CustomerLedger } from "../durable-objects/customer-ledger";
export { Inventory } from "../durable-objects/inventory";
export { LimitLedger } from "../durable-objects/limit-ledger";
export { Limiter } from "../durable-objects/limiter";
export { SandboxLedger } from "../durable-objects/sandbox-ledger";
export { WaitingRoom } from "../durable-objects/waiting-room";

/**
 * The Worker: catalog reads this isolate holds fresh are answered before the router
 * (workers/cached-reads.ts); everything else is the Hono app. Queue consumers and the cron trigger.
 */
export default {
  fetch(req, env, ctx) {
    let cfg: Config;
    try {
      cfg = config(env);
    } catch (err) {
      // A malformed var fails every request loudly (logged, 500 problem) rather than running on a fallback.
      log.error("configuration invalid", { error: String(err) });
      return problemResponse(new ApiError("internal_error", "The service is misconfigured."), crypto.randomUUID());
    }
    // TELEMETRY=off (a benchmark switch) turns every metric update into a no-op, on both paths.
    metrics.enabled = cfg.TELEMETRY === "on";
    try {
      const cached = answerCachedRead(req, env, ctx);
      if (cached) return cached;
    } catch (err) {
      // Never an answer of its own: the router answers (and, if it fails too, with a problem document).
      log.error("cached read failed; answering through the router", { error: String(err) });
    }
    return app.fetch(req, env, ctx);
  },
  queue: handleQueue,
  scheduled: handleScheduled,
} satisfies ExportedHandler<Env>;

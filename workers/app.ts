import { Hono } from "hono";
import { bodyLimit } from "./middleware/body-limit";
import { cors } from "./middleware/cors";
import { notFound, onError } from "./middleware/error-handler";
import { finish } from "./middleware/finish";
import { trace } from "./middleware/trace";
import { admin } from "./routes/admin";
import { devAuth } from "./routes/auth";
import { availability } from "./routes/availability";
import { devMailboxPage } from "./routes/dev-mailbox";
import { events } from "./routes/events";
import { holds } from "./routes/holds";
import { orders } from "./routes/orders";
import { organizerWebhooks } from "./routes/organizer-webhooks";
import { pages } from "./routes/pages";
import { paymentWebhooks } from "./routes/payment-webhooks";
import { queue } from "./routes/queue";
import { refunds } from "./routes/refunds";
import { rehearsal } from "./routes/rehearsal";
import { stats } from "./routes/stats";
import { system } from "./routes/system";
import { tickets } from "./routes/tickets";
import type { AppEnv } from "./types";

/**
 * Builds the edge app. Order matters: the finish step comes first, so every later line and error carries
 * the request id, and every answer, errors included, gets its security headers and its record (the
 * router-free catalog reads, workers/cached-reads.ts, finish theirs with the same step); the span next, so
 * handlers can pass it on; CORS answers preflights before auth; the body limit runs before any route reads
 * a body.
 */
function buildApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("*", finish());
  app.use("*", trace());
  app.use(
    "*",
    cors({
      allowMethods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
      allowHeaders: [
        "Authorization",
        "Content-Type",
        "Idempotency-Key",
        "X-Queue-Ticket",
        "X-Queue-Pass",
        "If-None-Match",
        "traceparent",
        "X-Request-Id",
      ],
      exposeHeaders: [
        "X-Request-Id",
        "traceparent",
        "ETag",
        "Retry-After",
        "RateLimit",
        "RateLimit-Policy",
        "Idempotency-Replayed",
        "Location",
      ],
      maxAgeSeconds: 600,
    }),
  );

  app.use("*", bodyLimit());

  app.route("/", system);
  app.route("/", pages);
  app.route("/", devAuth);
  app.route("/", devMailboxPage);
  app.route("/", events);
  app.route("/", holds);
  app.route("/", availability);
  app.route("/", queue);
  app.route("/", orders);
  app.route("/", tickets);
  app.route("/", refunds);
  app.route("/", paymentWebhooks);
  app.route("/", organizerWebhooks);
  app.route("/", admin);
  app.route("/", stats);
  app.route("/", rehearsal);

  app.notFound(notFound(() => app.routes));
  app.onError(onError);
  return app;
}

/** The app the Worker serves. */
export const app = buildApp();

import { Hono } from "hono";
import { accessLog } from "./middleware/access-log";
import { bodyLimit } from "./middleware/body-limit";
import { cors } from "./middleware/cors";
import { notFound, onError } from "./middleware/error-handler";
import { requestId } from "./middleware/request-id";
import { securityHeaders } from "./middleware/security-headers";
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
 * Builds the edge app. Order matters: the request id comes first so every later line and error carries
 * it; the access log wraps everything that can fail; CORS answers preflights before auth; the body limit
 * runs before any route reads a body.
 */
function buildApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("*", requestId());
  app.use("*", trace());
  app.use("*", accessLog());
  app.use("*", securityHeaders());
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

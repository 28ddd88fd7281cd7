import { Scalar } from "@scalar/hono-api-reference";
import { Hono } from "hono";
import { z } from "zod";
import { metrics } from "../../lib/metrics";
import { auth } from "../middleware/auth";
import { buildOpenApi, describeRoute } from "../openapi";
import type { AppEnv } from "../types";

/** Where the reference page's script is served (a static file, see scripts/vendor-web.mjs). */
export const SCALAR_SCRIPT = "/static/vendor/scalar-api-reference.js";

/** Health, the API reference and metrics. */
export const system = new Hono<AppEnv>();

describeRoute({
  operationId: "getHealth",
  method: "get",
  path: "/healthz",
  summary: "Liveness",
  tags: ["operations"],
  responses: { 200: { description: "Alive", schema: z.object({ ok: z.literal(true) }) } },
});
system.get("/healthz", (c) => c.json({ ok: true as const }));

let openApiBody: string | undefined;
describeRoute({
  operationId: "getOpenApiDocument",
  method: "get",
  path: "/openapi.json",
  summary: "This document",
  tags: ["operations"],
  responses: { 200: { description: "OpenAPI 3.1" } },
});
system.get("/openapi.json", (c) => {
  openApiBody ??= JSON.stringify(buildOpenApi("/"));
  return c.body(openApiBody, 200, { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "public, max-age=300" });
});

describeRoute({
  operationId: "getApiReference",
  method: "get",
  path: "/docs",
  summary: "Rendered API reference",
  tags: ["operations"],
  responses: { 200: { description: "HTML" } },
});
/** Scalar's reference, its script served from our own static files (scripts/vendor-web.mjs), not a CDN. */
const reference = Scalar<AppEnv>({ url: "/openapi.json", pageTitle: "Breakwater API", cdn: SCALAR_SCRIPT });
system.get("/docs", async (c, next) => {
  c.header(
    "Content-Security-Policy",
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; frame-ancestors 'none'",
  );
  return reference(c, next);
});

describeRoute({
  operationId: "getMetrics",
  method: "get",
  path: "/metrics",
  summary: "Prometheus metrics of the answering isolate (admin)",
  tags: ["operations"],
  auth: ["admin"],
  responses: { 200: { description: "text/plain; version=0.0.4" } },
});
system.get("/metrics", auth("admin"), (c) =>
  c.body(metrics.render(), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store" }),
);

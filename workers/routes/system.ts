import { Hono } from "hono";
import { z } from "zod";
import { metrics } from "../../lib/metrics";
import { auth } from "../middleware/auth";
import { buildOpenApi, describeRoute } from "../openapi";
import type { AppEnv } from "../types";
import { docsPage } from "./docs-page";

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
system.get("/docs", (c) =>
  c.html(docsPage, 200, {
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  }),
);

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

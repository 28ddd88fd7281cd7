import { Scalar } from "@scalar/hono-api-reference";
import { Hono } from "hono";
import { z } from "zod";
import { metrics } from "../../lib/metrics";
import { buildOpenApi } from "../openapi";
import { route } from "../route";
import type { AppEnv } from "../types";

/** Where the reference page's script is served (a static file, see scripts/vendor-web.mjs). */
export const SCALAR_SCRIPT = "/static/vendor/scalar-api-reference.js";

/** Health, the API reference and metrics. */
export const system = new Hono<AppEnv>();

route(
  system,
  {
    operationId: "getHealth",
    method: "get",
    path: "/healthz",
    summary: "Liveness",
    tags: ["operations"],
    responses: { 200: { description: "Alive", schema: z.object({ ok: z.literal(true) }) } },
  },
  (c) => c.json({ ok: true as const }),
);

let openApiBody: string | undefined;
route(
  system,
  {
    operationId: "getOpenApiDocument",
    method: "get",
    path: "/openapi.json",
    summary: "This document",
    tags: ["operations"],
    responses: { 200: { description: "OpenAPI 3.1" } },
  },
  (c) => {
    openApiBody ??= JSON.stringify(buildOpenApi("/"));
    return c.body(openApiBody, 200, { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "public, max-age=300" });
  },
);

/** Scalar's reference, its script served from our own static files (scripts/vendor-web.mjs), not a CDN. */
const reference = Scalar<AppEnv>({ url: "/openapi.json", pageTitle: "Breakwater API", cdn: SCALAR_SCRIPT });
route(
  system,
  {
    operationId: "getApiReference",
    method: "get",
    path: "/docs",
    summary: "Rendered API reference",
    tags: ["operations"],
    responses: { 200: { description: "HTML", mediaType: "text/html" } },
  },
  async (c) => {
    c.header(
      "Content-Security-Policy",
      "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; frame-ancestors 'none'",
    );
    return (await reference(c, async () => {})) ?? c.notFound();
  },
);

route(
  system,
  {
    operationId: "getMetrics",
    method: "get",
    path: "/metrics",
    summary: "Prometheus metrics of the answering isolate (admin)",
    tags: ["operations"],
    auth: ["admin"],
    responses: { 200: { description: "Prometheus text exposition", mediaType: "text/plain; version=0.0.4" } },
  },
  (c) => c.body(metrics.render(), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store" }),
);

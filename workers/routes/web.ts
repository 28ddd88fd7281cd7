import { Hono } from "hono";
import type { AppEnv } from "../types";
import { WEB_ASSETS } from "../web-assets.generated";

/** The page's own scripts and styles only; it talks to this origin only. */
const PAGE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/**
 * The static pages in web/ (the operations page, the Grafana dashboard), embedded at build time and
 * served by the Worker (not documented in OpenAPI: they are not API routes).
 */
export const web = new Hono<AppEnv>();

web.get("/ops", (c) => c.redirect("/ops.html", 302));
for (const [path, asset] of Object.entries(WEB_ASSETS)) {
  web.get(path, (c) =>
    c.body(asset.body, 200, { "Content-Type": asset.type, "Cache-Control": "public, max-age=60", "Content-Security-Policy": PAGE_CSP }),
  );
}

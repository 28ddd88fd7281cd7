import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { app } from "../../workers/app";
import { registeredRoutes } from "../../workers/openapi";
import { pages as pageRoutes } from "../../workers/routes/pages";
import { SCALAR_SCRIPT } from "../../workers/routes/system";
import { call, tokenFor } from "../helpers";

describe("/openapi.json", () => {
  it("documents every route the app serves, from the validating schemas", async () => {
    const res = await call("/openapi.json");
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown>; additionalProperties?: unknown } }> };
          }
        >
      >;
    };
    expect(doc.openapi).toBe("3.1.0");
    // The server-rendered pages are not API routes (static files are Workers Static Assets, not routes).
    const pages = new Set(pageRoutes.routes.map((r) => r.path));
    const served = new Set(
      app.routes
        .filter((r) => r.method !== "ALL" && !pages.has(r.path))
        .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`),
    );
    const documented = new Set(Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`)));
    expect([...served].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((r) => !served.has(r))).toEqual([]);
    const create = doc.paths["/v1/events"]?.post?.requestBody?.content["application/json"]?.schema;
    expect(Object.keys(create?.properties ?? {})).toEqual(expect.arrayContaining(["name", "sections", "perCustomerLimit"]));
    expect(create?.additionalProperties).toBe(false);
    expect(registeredRoutes().length).toBe(documented.size);
  });

  it("renders /docs with Scalar's reference, its script served from our own static files", async () => {
    const res = await call("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toContain("text/html");
    const html = await res.text();
    expect(html).toContain("/openapi.json");
    expect(html).toContain(`src="${SCALAR_SCRIPT}"`);
    expect(html).not.toMatch(/src="https?:/);
    // Static files are answered by the asset layer in front of the Worker (wrangler.toml [assets]).
    const script = await env.ASSETS.fetch(`https://breakwater.test${SCALAR_SCRIPT}`);
    expect(script.status).toBe(200);
    expect((await script.text()).length).toBeGreaterThan(100_000);
  });
});

describe("/metrics", () => {
  it("is for admins only and speaks Prometheus text", async () => {
    expect((await call("/metrics")).status).toBe(401);
    expect((await call("/metrics", { token: await tokenFor("b", "buyer") })).status).toBe(403);
    await call("/healthz");
    const res = await call("/metrics", { token: await tokenFor("root", "admin") });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("# TYPE breakwater_http_requests_total counter");
    expect(text).toMatch(/breakwater_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/);
  });
});

describe("a known path with a wrong method", () => {
  it("answers 405 method_not_allowed with Allow listing the path's methods, and changes nothing", async () => {
    const before = await call("/v1/events");
    for (const [method, path, allow] of [
      ["PUT", "/v1/events", "GET, HEAD, OPTIONS, POST"],
      ["DELETE", "/v1/events/evt_anything", "GET, HEAD, OPTIONS, PATCH"],
      ["POST", "/v1/holds/hld_x", "DELETE, GET, HEAD, OPTIONS"],
      ["PATCH", "/healthz", "GET, HEAD, OPTIONS"],
    ] as const) {
      const res = await call(path, { method, headers: { Authorization: `Bearer ${await tokenFor("admin-405", "admin")}` } });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get("Allow"), `${method} ${path}`).toBe(allow);
      expect(res.headers.get("Content-Type")).toContain("application/problem+json");
      expect(((await res.json()) as { code: string }).code).toBe("method_not_allowed");
    }
    expect(await (await call("/v1/events")).json()).toEqual(await before.json());
  });

  it("still answers 404 for a path no route has", async () => {
    const res = await call("/v1/nothing-here", { method: "DELETE" });
    expect(res.status).toBe(404);
    expect(res.headers.get("Allow")).toBeNull();
    expect(((await res.json()) as { code: string }).code).toBe("not_found");
  });
});

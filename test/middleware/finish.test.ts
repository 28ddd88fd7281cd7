import { afterEach, describe, expect, it, vi } from "vitest";
import { metrics } from "../../lib/metrics";
import { ApiError } from "../../lib/problem";
import { finish, finisher, logPolicy, requestIdFor, SECURITY_HEADERS } from "../../workers/middleware/finish";
import type { Problem } from "../helpers";
import { send, tinyApp, userFromHeader } from "./tiny-app";

/**
 * The finish step (workers/middleware/finish.ts) as the app's first middleware: the request id, the
 * security headers, and the request's record (log line and metrics). Its other user, the router-free
 * catalog path, is held against the app in test/routes/cached-reads.test.ts.
 */

type FinishOptions = Parameters<typeof finish>[0];

afterEach(() => vi.restoreAllMocks());

describe("finish: request id", () => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  /** finish() in front of a handler that reports the id it saw, one that throws, and one that is not found. */
  function app(opts?: FinishOptions) {
    const a = tinyApp();
    a.use("*", finish(opts));
    a.get("/seen", (c) => c.json({ seen: c.get("requestId") }));
    a.get("/fails", () => {
      throw new ApiError("sold_out");
    });
    a.get("/crashes", () => {
      throw new Error("boom");
    });
    return a;
  }

  const seenBy = async (res: Response) => ((await res.json()) as { seen: string }).seen;

  it("gives a request without an id a new UUID, the same on the context and the answer", async () => {
    const a = app();
    const first = await send(a, "/seen");
    const id = first.headers.get("X-Request-Id");
    expect(id).toMatch(UUID);
    expect(await seenBy(first)).toBe(id);
    const second = await send(a, "/seen");
    expect(second.headers.get("X-Request-Id")).toMatch(UUID);
    expect(second.headers.get("X-Request-Id")).not.toBe(id);
  });

  it("keeps a plausible caller id (8-64 of A-Z a-z 0-9 . _ -), boundaries included", async () => {
    for (const incoming of ["abcdefgh", "a".repeat(64), "proxy-7f3a.b_C-01", "0123456789"]) {
      const res = await send(app(), "/seen", { headers: { "X-Request-Id": incoming } });
      expect(res.headers.get("X-Request-Id"), incoming).toBe(incoming);
      expect(await seenBy(res)).toBe(incoming);
    }
  });

  it("replaces garbled, too short, too long and injected ids with a new UUID", async () => {
    const garbled = [
      "",
      "short",
      "a".repeat(65),
      "<script>alert(1)</script>",
      "id with spaces",
      "ab/cd/ef/gh",
      "id;drop table",
      "ünïcödé-id",
    ];
    for (const incoming of garbled) {
      const res = await send(app(), "/seen", { headers: { "X-Request-Id": incoming } });
      const id = res.headers.get("X-Request-Id");
      expect(id, JSON.stringify(incoming)).toMatch(UUID);
      expect(await seenBy(res)).toBe(id);
    }
    expect(requestIdFor(undefined)).toMatch(UUID);
    expect(requestIdFor(null)).toMatch(UUID);
  });

  it("reads the id from the configured header", async () => {
    const a = app({ requestIdHeader: "CF-Ray" });
    const res = await send(a, "/seen", { headers: { "CF-Ray": "8c1d2e3f4a5b6c7d-AMS", "X-Request-Id": "ignored-because-other-header" } });
    expect(res.headers.get("X-Request-Id")).toBe("8c1d2e3f4a5b6c7d-AMS");
    expect(await seenBy(res)).toBe("8c1d2e3f4a5b6c7d-AMS");
  });

  it("puts the same id on error answers, in the header and the problem document", async () => {
    const a = app();
    for (const [path, status, code] of [
      ["/fails", 409, "sold_out"],
      ["/crashes", 500, "internal_error"],
      ["/nowhere", 404, "not_found"],
    ] as const) {
      const res = await send(a, path, { headers: { "X-Request-Id": `client-${code}` } });
      expect(res.status).toBe(status);
      expect(res.headers.get("X-Request-Id")).toBe(`client-${code}`);
      expect(((await res.json()) as Problem).requestId).toBe(`client-${code}`);
    }
  });
});

describe("finish: security headers", () => {
  const HSTS = "Strict-Transport-Security";

  /** finish() in front of JSON, HTML, an error, and a route with its own policy. */
  function app(opts?: FinishOptions) {
    const a = tinyApp();
    a.use("*", finish(opts));
    a.get("/json", (c) => c.json({ ok: true }));
    a.get("/page", (c) => c.html("<h1>hi</h1>"));
    a.get("/own-csp", (c) => c.html("<script src=/x.js></script>", 200, { "Content-Security-Policy": "script-src 'self'" }));
    a.get("/fails", () => {
      throw new ApiError("forbidden");
    });
    return a;
  }

  const expectBaseHeaders = (res: Response | Headers) => {
    const h = res instanceof Headers ? res : res.headers;
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) expect(h.get(k), k).toBe(v);
  };

  it("gives a JSON answer nosniff, no framing and an empty content policy, and no page-only headers", async () => {
    const res = await send(app(), "/json");
    expect(res.status).toBe(200);
    expectBaseHeaders(res);
    expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(res.headers.get("X-Frame-Options")).toBe("DENY");
    expect(res.headers.get("Content-Security-Policy")).toBe("default-src 'none'; frame-ancestors 'none'");
    expect(res.headers.has("Referrer-Policy")).toBe(false);
  });

  it("sends HSTS over https only (RFC 6797 §7.2)", async () => {
    const secure = await send(app(), "/json");
    expect(secure.headers.get(HSTS)).toBe("max-age=31536000; includeSubDomains");
    const plain = await send(app(), "/json", { origin: "http://127.0.0.1:8787" });
    expect(plain.headers.has(HSTS)).toBe(false);
    expectBaseHeaders(plain);
  });

  it("adds Referrer-Policy to HTML answers and keeps a route's own Content-Security-Policy", async () => {
    const page = await send(app(), "/page");
    expect(page.headers.get("Content-Type")).toContain("text/html");
    expect(page.headers.get("Referrer-Policy")).toBe("no-referrer");
    expectBaseHeaders(page);
    const own = await send(app(), "/own-csp");
    expect(own.headers.get("Content-Security-Policy")).toBe("script-src 'self'");
    expect(own.headers.get("X-Frame-Options")).toBe("DENY");
  });

  it("covers error answers and unknown routes too", async () => {
    for (const path of ["/fails", "/nowhere"]) {
      const res = await send(app(), path);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.headers.get("Content-Type")).toBe("application/problem+json");
      expectBaseHeaders(res);
      expect(res.headers.get(HSTS)).toContain("max-age=");
    }
  });

  it("takes extra or overriding headers from its options", async () => {
    const res = await send(app({ headers: { "X-Frame-Options": "SAMEORIGIN", "Permissions-Policy": "camera=()" } }), "/json");
    expect(res.headers.get("X-Frame-Options")).toBe("SAMEORIGIN");
    expect(res.headers.get("Permissions-Policy")).toBe("camera=()");
    expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
  });

  it("prepares the same headers once per key object and scheme, for answers built before any router", () => {
    const json = { "Cache-Control": "public, max-age=1", "Content-Type": "application/json" };
    const html = { "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": "script-src 'self'" };
    const prepared = finisher.prepared((key: { headers: Record<string, string> }) => key.headers);
    const [a, b, page] = [{ headers: json }, { headers: json }, { headers: html }];
    const secureA = prepared(a, true);
    expect(prepared(a, true)).toBe(secureA);
    expect(prepared(b, true)).not.toBe(secureA);
    expect(secureA.get("Cache-Control")).toBe("public, max-age=1");
    expectBaseHeaders(secureA);
    expect(secureA.get(HSTS)).toBe("max-age=31536000; includeSubDomains");
    expect(secureA.has("Referrer-Policy")).toBe(false);
    const plainA = prepared(a, false);
    expect(plainA).not.toBe(secureA);
    expectBaseHeaders(plainA);
    expect(plainA.has(HSTS)).toBe(false);
    // The same rules as for a handler's answer: a page gets Referrer-Policy and keeps its own policy.
    const securePage = prepared(page, true);
    expect(securePage.get("Referrer-Policy")).toBe("no-referrer");
    expect(securePage.get("Content-Security-Policy")).toBe("script-src 'self'");
    expect(securePage.get("X-Frame-Options")).toBe("DENY");
  });
});

describe("finish: access log and metrics", () => {
  interface Line {
    level: string;
    msg: string;
    requestId?: string;
    traceId?: string;
    method: string;
    route: string;
    path: string;
    status: number;
    durationMs: number;
    cache?: string;
    user?: string;
  }

  /** finish() writing into `lines`, in front of a few routes. */
  function app() {
    const lines: Line[] = [];
    const a = tinyApp();
    a.use("*", finish({ write: (l) => lines.push(JSON.parse(l) as Line) }));
    a.use("*", userFromHeader);
    a.get("/items/:id", (c) => {
      c.set("cacheStatus", "kv");
      return c.json({ id: c.req.param("id") });
    });
    a.post("/items", (c) => c.json({}, 201));
    a.get("/refused", () => {
      throw new ApiError("forbidden");
    });
    a.get("/crashes", () => {
      throw new Error("boom");
    });
    return { a, lines };
  }

  /** The tests' environment turns the log off (vitest.config.mts); these tests want every line. */
  const all = { REQUEST_LOG: "all" };

  it("writes one JSON line per request with the route pattern, never the raw path, in the series", async () => {
    const { a, lines } = app();
    const before = metrics.sum("breakwater_http_requests_total", { route: "/items/:id", status: 200, method: "GET" });
    const res = await send(a, "/items/abc-123", { headers: { "X-User": "log-alice", "X-Request-Id": "client-log-0001" }, env: all });
    expect(res.status).toBe(200);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toEqual({
      level: "info",
      msg: "request",
      requestId: "client-log-0001",
      method: "GET",
      route: "/items/:id",
      path: "/items/abc-123",
      status: 200,
      durationMs: expect.any(Number),
      cache: "kv",
      user: "log-alice",
    });
    expect(lines[0]?.durationMs).toBeGreaterThanOrEqual(0);
    expect(metrics.sum("breakwater_http_requests_total", { route: "/items/:id", status: 200, method: "GET" }) - before).toBe(1);
    expect(metrics.sum("breakwater_http_requests_total", { route: "/items/abc-123" })).toBe(0);
  });

  it("levels lines by status: warn for 4xx, error for 5xx, and logs requests no route matched as unmatched", async () => {
    const { a, lines } = app();
    vi.spyOn(console, "error").mockImplementation(() => {});
    await send(a, "/items", { method: "POST", env: all });
    await send(a, "/refused", { env: all });
    await send(a, "/crashes", { env: all });
    await send(a, "/no/such/path/9f8e7d", { env: all });
    expect(lines.map((l) => [l.level, l.status, l.route])).toEqual([
      ["info", 201, "/items"],
      ["warn", 403, "/refused"],
      ["error", 500, "/crashes"],
      ["warn", 404, "unmatched"],
    ]);
    expect(lines[3]?.path).toBe("/no/such/path/9f8e7d");
    for (const l of lines) expect(l.user).toBeUndefined();
  });

  it("follows REQUEST_LOG: off, errors, a sample rate (5xx always), and all", async () => {
    const { a, lines } = app();
    vi.spyOn(console, "error").mockImplementation(() => {});
    const round = async (policy: string) => {
      lines.length = 0;
      for (const path of ["/items/1", "/refused", "/crashes"]) await send(a, path, { env: { REQUEST_LOG: policy } });
      return lines.map((l) => l.status);
    };
    expect(await round("off")).toEqual([]);
    expect(await round("errors")).toEqual([403, 500]);
    expect(await round("all")).toEqual([200, 403, 500]);
    vi.spyOn(Math, "random").mockReturnValue(0.5);
    expect(await round("0.4")).toEqual([500]);
    expect(await round("0.6")).toEqual([200, 403, 500]);
  });

  it("counts every request in the metrics even when no line is written", async () => {
    const { a, lines } = app();
    const before = metrics.sum("breakwater_http_requests_total", { route: "/items", status: 201 });
    for (let i = 0; i < 3; i++) await send(a, "/items", { method: "POST", env: { REQUEST_LOG: "off" } });
    expect(lines).toEqual([]);
    expect(metrics.sum("breakwater_http_requests_total", { route: "/items", status: 201 }) - before).toBe(3);
  });
});

describe("logPolicy", () => {
  it("parses the documented values", () => {
    const statuses = [200, 404, 500];
    expect(statuses.map(logPolicy(undefined))).toEqual([true, true, true]);
    expect(statuses.map(logPolicy("all"))).toEqual([true, true, true]);
    expect(statuses.map(logPolicy("off"))).toEqual([false, false, false]);
    expect(statuses.map(logPolicy("errors"))).toEqual([false, true, true]);
    vi.spyOn(Math, "random").mockReturnValue(0.99);
    expect(statuses.map(logPolicy("1"))).toEqual([true, true, true]);
    expect(statuses.map(logPolicy("0.5"))).toEqual([false, false, true]);
  });
});

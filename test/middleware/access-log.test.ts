import { afterEach, describe, expect, it, vi } from "vitest";
import { metrics } from "../../lib/metrics";
import { ApiError } from "../../lib/problem";
import { accessLog, logPolicy } from "../../workers/middleware/access-log";
import { requestId } from "../../workers/middleware/request-id";
import { send, tinyApp, userFromHeader } from "./tiny-app";

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

/** requestId() and accessLog() writing into `lines`, in front of a few routes. */
function app() {
  const lines: Line[] = [];
  const a = tinyApp();
  a.use("*", requestId());
  a.use("*", accessLog({ write: (l) => lines.push(JSON.parse(l) as Line) }));
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

afterEach(() => vi.restoreAllMocks());

describe("accessLog", () => {
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

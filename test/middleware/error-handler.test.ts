import { HTTPException } from "hono/http-exception";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, codeToStatus, type ErrorCode } from "../../lib/problem";
import type { Problem } from "../helpers";
import { send, tinyApp } from "./tiny-app";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A handler that throws `err`, behind a stand-in request id (unless `withId` is false). */
function throwing(err: unknown, withId = true) {
  const a = tinyApp();
  if (withId)
    a.use("*", async (c, next) => {
      c.set("requestId", "req-errors-1");
      await next();
    });
  a.all("/throw", () => {
    throw err;
  });
  return a;
}

async function problemOf(res: Response): Promise<Problem & { retryAfterSeconds?: number }> {
  expect(res.headers.get("Content-Type")).toBe("application/problem+json");
  return (await res.json()) as Problem & { retryAfterSeconds?: number };
}

afterEach(() => vi.restoreAllMocks());

describe("onError: ApiError", () => {
  it("answers every code with its status and a complete RFC 9457 document", async () => {
    for (const code of Object.keys(codeToStatus) as ErrorCode[]) {
      const res = await send(throwing(new ApiError(code, `detail of ${code}`)), "/throw");
      expect(res.status, code).toBe(codeToStatus[code]);
      const body = await problemOf(res);
      expect(body).toEqual({
        type: `https://breakwater.dev/problems/${code.replaceAll("_", "-")}`,
        title: expect.any(String),
        status: codeToStatus[code],
        detail: `detail of ${code}`,
        code,
        requestId: "req-errors-1",
      });
      expect(body.title.length, code).toBeGreaterThan(3);
      expect(res.headers.get("X-Request-Id")).toBe("req-errors-1");
    }
  });

  it("carries field issues, Retry-After (whole seconds, at least 1) and extra headers", async () => {
    const issues = [{ path: "sections.0.capacity", message: "Too small" }];
    const invalid = await problemOf(await send(throwing(new ApiError("validation_failed", "bad", { errors: issues })), "/throw"));
    expect(invalid.errors).toEqual(issues);

    for (const [after, header] of [
      [0.2, "1"],
      [1, "1"],
      [2.01, "3"],
      [30, "30"],
    ] as const) {
      const res = await send(throwing(new ApiError("overloaded", "busy", { retryAfterSeconds: after })), "/throw");
      expect(res.status).toBe(503);
      expect(res.headers.get("Retry-After"), String(after)).toBe(header);
      expect((await problemOf(res)).retryAfterSeconds).toBe(after);
    }
    const unauth = await send(throwing(new ApiError("unauthorized", "who?", { headers: { "WWW-Authenticate": "Bearer" } })), "/throw");
    expect(unauth.headers.get("WWW-Authenticate")).toBe("Bearer");
    // No field issues and no retry hint unless given.
    const plain = await problemOf(await send(throwing(new ApiError("not_found")), "/throw"));
    expect(plain).not.toHaveProperty("errors");
    expect(plain).not.toHaveProperty("retryAfterSeconds");
    expect(plain.detail).toBe("Not found");
  });

  it("makes up a request id when no middleware set one, the same in header and body", async () => {
    const res = await send(throwing(new ApiError("forbidden"), false), "/throw");
    const id = res.headers.get("X-Request-Id");
    expect(id).toMatch(UUID);
    expect((await problemOf(res)).requestId).toBe(id);
  });
});

describe("onError: Hono's HTTP exceptions", () => {
  it("maps 400, 401 and 413 onto validation_failed, unauthorized and payload_too_large", async () => {
    const cases = [
      [new HTTPException(400, { message: "Malformed JSON in request body" }), 400, "validation_failed", "Malformed JSON in request body"],
      [new HTTPException(401, { message: "Unauthorized" }), 401, "unauthorized", undefined],
      [new HTTPException(413), 413, "payload_too_large", undefined],
    ] as const;
    for (const [err, status, code, detail] of cases) {
      const res = await send(throwing(err), "/throw");
      expect(res.status).toBe(status);
      const body = await problemOf(res);
      expect(body.code).toBe(code);
      if (detail) expect(body.detail).toBe(detail);
    }
  });

  it("answers a 5xx HTTP exception as internal_error", async () => {
    const res = await send(throwing(new HTTPException(502, { message: "upstream" })), "/throw");
    expect(res.status).toBe(500);
    expect((await problemOf(res)).code).toBe("internal_error");
  });
});

describe("onError: anything else", () => {
  it("answers 500 internal_error without internals, and logs the error with its stack and request id", async () => {
    const lines: string[] = [];
    vi.spyOn(console, "error").mockImplementation((line: string) => lines.push(line));
    const res = await send(throwing(new TypeError("secret connection string postgres://u:p@db")), "/throw");
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain("postgres://");
    expect(text).not.toContain("TypeError");
    expect(JSON.parse(text)).toMatchObject({ code: "internal_error", status: 500, requestId: "req-errors-1" });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      level: "error",
      msg: "unhandled",
      requestId: "req-errors-1",
      route: "/throw",
      error: "TypeError: secret connection string postgres://u:p@db",
      stack: expect.stringContaining("TypeError"),
    });
  });

  it("answers an unknown route with 404 not_found naming method and path", async () => {
    const res = await send(throwing(new Error("unused")), "/no/such/route", { method: "PATCH" });
    expect(res.status).toBe(404);
    const body = await problemOf(res);
    expect(body).toMatchObject({ code: "not_found", requestId: "req-errors-1" });
    expect(body.detail).toBe("No route for PATCH /no/such/route.");
  });
});

import { describe, expect, it } from "vitest";
import { ApiError } from "../../lib/problem";
import { requestId, requestIdFor } from "../../workers/middleware/request-id";
import type { Problem } from "../helpers";
import { send, tinyApp } from "./tiny-app";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** requestId() in front of a handler that reports the id it saw, one that throws, and one that is not found. */
function app(opts?: Parameters<typeof requestId>[0]) {
  const a = tinyApp();
  a.use("*", requestId(opts));
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

describe("requestId", () => {
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
    const a = app({ header: "CF-Ray" });
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

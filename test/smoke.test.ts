import { describe, expect, it } from "vitest";
import { call } from "./helpers";

describe("healthz", () => {
  it("answers ok with a request id", async () => {
    const res = await call("/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    expect(res.headers.get("X-Request-Id")).toMatch(/.{8,}/);
  });
});

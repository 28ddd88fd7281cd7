import { describe, expect, it } from "vitest";
import { bodyLimit } from "../../workers/middleware/body-limit";
import type { Problem } from "../helpers";
import { send, tinyApp } from "./tiny-app";

/** bodyLimit() in front of a handler that echoes the size of the body it read (and counts its runs). */
function app(opts?: Parameters<typeof bodyLimit>[0]) {
  let runs = 0;
  const a = tinyApp();
  a.use("*", bodyLimit(opts));
  a.on(["POST", "PUT", "PATCH", "DELETE", "GET"], "/echo", async (c) => {
    runs++;
    const text = await c.req.text();
    return c.json({ bytes: new TextEncoder().encode(text).length });
  });
  return { a, runs: () => runs };
}

/** A body of `n` bytes streamed in chunks, so no Content-Length is declared. */
function streamOf(n: number, chunk = 1_000): ReadableStream<Uint8Array> {
  let left = n;
  return new ReadableStream({
    pull(controller) {
      if (left <= 0) return controller.close();
      const size = Math.min(chunk, left);
      left -= size;
      controller.enqueue(new Uint8Array(size).fill(97));
    },
  });
}

async function expectTooLarge(res: Response) {
  expect(res.status).toBe(413);
  expect(res.headers.get("Content-Type")).toBe("application/problem+json");
  expect(((await res.json()) as Problem).code).toBe("payload_too_large");
}

describe("bodyLimit", () => {
  it("passes bodies up to MAX_BODY_BYTES intact and refuses one byte more, by Content-Length, before the handler runs", async () => {
    const { a, runs } = app();
    const limit = { MAX_BODY_BYTES: "100" };
    const ok = await send(a, "/echo", { method: "POST", body: "x".repeat(100), env: limit });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ bytes: 100 });
    expect(runs()).toBe(1);
    await expectTooLarge(await send(a, "/echo", { method: "POST", body: "x".repeat(101), env: limit }));
    expect(runs()).toBe(1);
  });

  it("counts bytes, not characters", async () => {
    const { a } = app();
    // 40 characters, 80 bytes in UTF-8.
    await expectTooLarge(await send(a, "/echo", { method: "PUT", body: "é".repeat(40), env: { MAX_BODY_BYTES: "79" } }));
    expect((await send(a, "/echo", { method: "PUT", body: "é".repeat(40), env: { MAX_BODY_BYTES: "80" } })).status).toBe(200);
  });

  it("refuses a streamed body without Content-Length once it grows past the limit", async () => {
    const { a } = app();
    const limit = { MAX_BODY_BYTES: "5000" };
    const small = await send(a, "/echo", { method: "POST", body: streamOf(5_000), env: limit, duplex: "half" } as RequestInit);
    expect(small.status).toBe(200);
    expect(await small.json()).toEqual({ bytes: 5_000 });
    await expectTooLarge(await send(a, "/echo", { method: "POST", body: streamOf(50_000), env: limit, duplex: "half" } as RequestInit));
  });

  it("applies to PATCH and DELETE, not to GET", async () => {
    const { a } = app();
    const limit = { MAX_BODY_BYTES: "10" };
    await expectTooLarge(await send(a, "/echo", { method: "PATCH", body: "x".repeat(11), env: limit }));
    await expectTooLarge(await send(a, "/echo", { method: "DELETE", body: "x".repeat(11), env: limit }));
    expect((await send(a, "/echo", { method: "GET", env: limit })).status).toBe(200);
  });

  it("takes 64 KiB when MAX_BODY_BYTES is unset, a fixed option over the var, and refuses a malformed var loudly", async () => {
    const plain = app().a;
    for (const value of [undefined, ""]) {
      const e = { MAX_BODY_BYTES: value as unknown as string };
      expect((await send(plain, "/echo", { method: "POST", body: "x".repeat(65_536), env: e })).status, String(value)).toBe(200);
      await expectTooLarge(await send(plain, "/echo", { method: "POST", body: "x".repeat(65_537), env: e }));
    }
    const fixed = app({ maxBytes: 20 }).a;
    expect((await send(fixed, "/echo", { method: "POST", body: "x".repeat(20), env: { MAX_BODY_BYTES: "5" } })).status).toBe(200);
    await expectTooLarge(await send(fixed, "/echo", { method: "POST", body: "x".repeat(21), env: { MAX_BODY_BYTES: "5" } }));
    for (const value of ["lots", "1.5"]) {
      const res = await send(plain, "/echo", { method: "POST", body: "x", env: { MAX_BODY_BYTES: value } });
      expect(res.status, value).toBe(500);
      expect(((await res.json()) as { code: string }).code).toBe("internal_error");
    }
  });

  it("follows a change of MAX_BODY_BYTES between requests", async () => {
    const { a } = app();
    await expectTooLarge(await send(a, "/echo", { method: "POST", body: "x".repeat(50), env: { MAX_BODY_BYTES: "40" } }));
    expect((await send(a, "/echo", { method: "POST", body: "x".repeat(50), env: { MAX_BODY_BYTES: "60" } })).status).toBe(200);
    await expectTooLarge(await send(a, "/echo", { method: "POST", body: "x".repeat(50), env: { MAX_BODY_BYTES: "40" } }));
  });
});

import { describe, expect, it } from "vitest";
import { ApiError } from "../../lib/problem";
import { cors } from "../../workers/middleware/cors";
import { send, tinyApp } from "./tiny-app";

const OPTIONS = {
  allowMethods: ["GET", "POST", "DELETE"],
  allowHeaders: ["Authorization", "Content-Type", "Idempotency-Key"],
  exposeHeaders: ["X-Request-Id", "ETag"],
  maxAgeSeconds: 600,
};

/** cors() in front of a handler that counts its runs, and one that fails with a problem. */
function app() {
  let runs = 0;
  const a = tinyApp();
  a.use("*", cors(OPTIONS));
  a.on(["GET", "POST"], "/thing", (c) => {
    runs++;
    return c.json({ ok: true });
  });
  a.get("/fails", () => {
    throw new ApiError("unauthorized");
  });
  return { a, runs: () => runs };
}

const preflight = (origin: string, corsOrigins: string) => ({
  method: "OPTIONS",
  headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization" },
  env: { CORS_ORIGINS: corsOrigins },
});

describe("cors: preflights", () => {
  it("answers a preflight itself with 204, the allowed methods, headers and max age, never reaching a route", async () => {
    const { a, runs } = app();
    const res = await send(a, "/thing", preflight("https://shop.example", "*"));
    expect(res.status).toBe(204);
    expect(await res.text()).toBe("");
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(res.headers.get("Access-Control-Allow-Methods")).toBe("GET,POST,DELETE");
    expect(res.headers.get("Access-Control-Allow-Headers")).toBe("Authorization,Content-Type,Idempotency-Key");
    expect(res.headers.get("Access-Control-Max-Age")).toBe("600");
    expect(res.headers.get("Vary")).toBe("Origin");
    // A preflight for a path no route serves is answered the same (the browser asks before it knows).
    expect((await send(a, "/unknown", preflight("https://shop.example", "*"))).status).toBe(204);
    expect(runs()).toBe(0);
  });

  it("leaves the allow-origin out of a preflight from an origin not on the list", async () => {
    const { a } = app();
    const listed = await send(a, "/thing", preflight("https://shop.example", "https://shop.example, https://admin.example"));
    expect(listed.headers.get("Access-Control-Allow-Origin")).toBe("https://shop.example");
    const other = await send(a, "/thing", preflight("https://evil.example", "https://shop.example, https://admin.example"));
    expect(other.status).toBe(204);
    expect(other.headers.has("Access-Control-Allow-Origin")).toBe(false);
  });

  it("passes an OPTIONS without Access-Control-Request-Method, or without Origin, to the app", async () => {
    const { a } = app();
    const noMethod = await send(a, "/thing", {
      method: "OPTIONS",
      headers: { Origin: "https://shop.example" },
      env: { CORS_ORIGINS: "*" },
    });
    // The app answers a plain OPTIONS of a known path with the methods it takes, and no CORS headers.
    expect(noMethod.status).toBe(204);
    expect(noMethod.headers.get("Allow")).toBe("GET, HEAD, OPTIONS, POST");
    const noOrigin = await send(a, "/thing", {
      method: "OPTIONS",
      headers: { "Access-Control-Request-Method": "POST" },
      env: { CORS_ORIGINS: "*" },
    });
    expect(noOrigin.status).toBe(204);
    expect(noOrigin.headers.has("Access-Control-Allow-Origin")).toBe(false);
  });
});

describe("cors: actual requests", () => {
  it("adds nothing to a request without Origin", async () => {
    const { a } = app();
    const res = await send(a, "/thing", { env: { CORS_ORIGINS: "*" } });
    expect(res.status).toBe(200);
    for (const h of ["Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Vary"]) expect(res.headers.has(h), h).toBe(false);
  });

  it("allows any origin with *, exposing the listed headers, with no Vary", async () => {
    const { a, runs } = app();
    const res = await send(a, "/thing", { method: "POST", headers: { Origin: "https://anyone.example" }, env: { CORS_ORIGINS: "*" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(res.headers.get("Access-Control-Expose-Headers")).toBe("X-Request-Id,ETag");
    expect(res.headers.has("Vary")).toBe(false);
    expect(runs()).toBe(1);
  });

  it("echoes a listed origin with Vary: Origin, and answers others without CORS headers", async () => {
    const { a, runs } = app();
    const e = { CORS_ORIGINS: "https://shop.example,https://admin.example" };
    const listed = await send(a, "/thing", { headers: { Origin: "https://admin.example" }, env: e });
    expect(listed.headers.get("Access-Control-Allow-Origin")).toBe("https://admin.example");
    expect(listed.headers.get("Vary")).toBe("Origin");
    for (const origin of ["https://evil.example", "https://shop.example.evil.example", "http://shop.example", "null"]) {
      const res = await send(a, "/thing", { headers: { Origin: origin }, env: e });
      expect(res.status).toBe(200);
      expect(res.headers.has("Access-Control-Allow-Origin"), origin).toBe(false);
      expect(res.headers.has("Access-Control-Expose-Headers"), origin).toBe(false);
    }
    // The route still runs: CORS is for browsers to enforce, not an access check.
    expect(runs()).toBe(5);
  });

  it("puts CORS headers on error answers too, so a browser can read the problem", async () => {
    const { a } = app();
    const res = await send(a, "/fails", { headers: { Origin: "https://shop.example" }, env: { CORS_ORIGINS: "https://shop.example" } });
    expect(res.status).toBe(401);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("https://shop.example");
    expect(res.headers.get("Access-Control-Expose-Headers")).toContain("X-Request-Id");
  });

  it("allows every origin when CORS_ORIGINS is unset (docs/api.md: * by default), none when it is empty", async () => {
    const unset = app().a;
    const res = await send(unset, "/thing", {
      headers: { Origin: "https://shop.example" },
      env: { CORS_ORIGINS: undefined as unknown as string },
    });
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    const empty = app().a;
    const none = await send(empty, "/thing", { headers: { Origin: "https://shop.example" }, env: { CORS_ORIGINS: "" } });
    expect(none.headers.has("Access-Control-Allow-Origin")).toBe(false);
  });

  it("follows a change of CORS_ORIGINS between requests", async () => {
    const { a } = app();
    const ask = (setting: string) => send(a, "/thing", { headers: { Origin: "https://shop.example" }, env: { CORS_ORIGINS: setting } });
    expect((await ask("*")).headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect((await ask("https://other.example")).headers.has("Access-Control-Allow-Origin")).toBe(false);
    expect((await ask("https://shop.example")).headers.get("Access-Control-Allow-Origin")).toBe("https://shop.example");
  });
});

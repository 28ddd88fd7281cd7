import { describe, expect, it } from "vitest";
import { ApiError } from "../../lib/problem";
import { SECURITY_HEADERS, securityHeaders } from "../../workers/middleware/security-headers";
import { send, tinyApp } from "./tiny-app";

const HSTS = "Strict-Transport-Security";

/** securityHeaders() in front of JSON, HTML, an error, and a route with its own policy. */
function app(opts?: Parameters<typeof securityHeaders>[0]) {
  const a = tinyApp();
  a.use("*", securityHeaders(opts));
  a.get("/json", (c) => c.json({ ok: true }));
  a.get("/page", (c) => c.html("<h1>hi</h1>"));
  a.get("/own-csp", (c) => c.html("<script src=/x.js></script>", 200, { "Content-Security-Policy": "script-src 'self'" }));
  a.get("/fails", () => {
    throw new ApiError("forbidden");
  });
  return a;
}

const expectBaseHeaders = (res: Response) => {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) expect(res.headers.get(k), k).toBe(v);
};

describe("securityHeaders", () => {
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
});

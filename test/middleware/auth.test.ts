import { env } from "cloudflare:workers";
import { sign } from "hono/utils/jwt/jwt";
import { describe, expect, it } from "vitest";
import { issueToken, type Principal } from "../../lib/auth";
import { b64url } from "../../lib/signing";
import { auth } from "../../workers/middleware/auth";
import type { Problem } from "../helpers";
import { send, tinyApp } from "./tiny-app";

const nowSeconds = () => Math.floor(Date.now() / 1000);
const json64 = (v: unknown) => b64url(new TextEncoder().encode(JSON.stringify(v)));

/** auth() guarding a buyer route, a staff route and an any-role route; each handler records the principal it saw. */
function app() {
  const seen: Principal[] = [];
  const a = tinyApp();
  a.get("/buyer", auth("buyer"), (c) => {
    seen.push(c.get("principal"));
    return c.json({ principal: c.get("principal") });
  });
  a.get("/staff", auth("organizer", "admin"), (c) => {
    seen.push(c.get("principal"));
    return c.json({ principal: c.get("principal") });
  });
  a.get("/anyone", auth(), (c) => {
    seen.push(c.get("principal"));
    return c.json({ principal: c.get("principal") });
  });
  return { a, seen };
}

const bearer = (token: string) => ({ headers: { Authorization: `Bearer ${token}` } });

async function expectProblem(res: Response, status: number, code: string, detail?: RegExp): Promise<Problem> {
  expect(res.status).toBe(status);
  expect(res.headers.get("Content-Type")).toBe("application/problem+json");
  const body = (await res.json()) as Problem;
  expect(body.code).toBe(code);
  if (detail) expect(body.detail).toMatch(detail);
  return body;
}

describe("auth: valid tokens", () => {
  it("lets an allowed role through and hands the handler its principal", async () => {
    const { a, seen } = app();
    const res = await send(a, "/buyer", bearer(await issueToken({ sub: "auth-alice", role: "buyer" }, env.JWT_SECRET)));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ principal: { sub: "auth-alice", role: "buyer" } });
    expect(seen).toEqual([{ sub: "auth-alice", role: "buyer" }]);
  });

  it("accepts any of several roles, any role when none is named, and the scheme in any case", async () => {
    const { a, seen } = app();
    const organizer = await issueToken({ sub: "auth-org", role: "organizer" }, env.JWT_SECRET);
    const admin = await issueToken({ sub: "auth-admin", role: "admin" }, env.JWT_SECRET);
    expect((await send(a, "/staff", bearer(organizer))).status).toBe(200);
    expect((await send(a, "/staff", bearer(admin))).status).toBe(200);
    expect((await send(a, "/anyone", { headers: { Authorization: `bEaReR   ${organizer}` } })).status).toBe(200);
    expect(seen.map((p) => p.sub)).toEqual(["auth-org", "auth-admin", "auth-org"]);
  });
});

describe("auth: 401 unauthorized", () => {
  it("asks for a bearer token when the header is missing, and never runs the handler", async () => {
    const { a, seen } = app();
    for (const path of ["/buyer", "/staff", "/anyone"]) {
      const res = await send(a, path);
      await expectProblem(res, 401, "unauthorized", /Bearer/);
      expect(res.headers.get("WWW-Authenticate")).toBe("Bearer");
    }
    expect(seen).toEqual([]);
  });

  it("refuses headers that are not a bearer JWT", async () => {
    const { a, seen } = app();
    const token = await issueToken({ sub: "auth-shape", role: "buyer" }, env.JWT_SECRET);
    const headers = [
      "",
      "Bearer",
      "Bearer ",
      `Basic ${btoa("user:pass")}`,
      `Token ${token}`,
      "Bearer not-a-jwt",
      "Bearer a.b",
      `Bearer ${token} extra`,
      `Bearer ${token.replace(".", "..")}`,
      `Bearer${token}`,
    ];
    for (const h of headers) {
      const res = await send(a, "/buyer", { headers: { Authorization: h } });
      await expectProblem(res, 401, "unauthorized");
      expect(res.headers.get("WWW-Authenticate"), JSON.stringify(h)).toBe("Bearer");
    }
    expect(seen).toEqual([]);
  });

  it("refuses garbled, forged, expired and claim-less tokens", async () => {
    const { a, seen } = app();
    const exp = nowSeconds() + 600;
    const good = await issueToken({ sub: "auth-forged", role: "buyer" }, env.JWT_SECRET);
    const [header, payload] = good.split(".") as [string, string, string];
    const cases: [string, string, RegExp][] = [
      ["garbled header", `bm90IGpzb24.${payload}.sig`, /not valid/],
      ["garbled payload", `${header}.bm90IGpzb24.sig`, /not valid/],
      [
        "signed with another secret",
        await sign({ sub: "auth-forged", role: "buyer", exp }, "another-secret-0123456789abcdef", "HS256"),
        /not valid/,
      ],
      ["signature of another token", `${header}.${json64({ sub: "auth-forged", role: "admin", exp })}.${good.split(".")[2]}`, /not valid/],
      ["alg none", `${json64({ alg: "none", typ: "JWT" })}.${json64({ sub: "auth-forged", role: "buyer", exp })}.`, /not valid/],
      ["expired", await sign({ sub: "auth-forged", role: "buyer", exp: nowSeconds() - 5 }, env.JWT_SECRET, "HS256"), /expired/],
      ["no exp", await sign({ sub: "auth-forged", role: "buyer" }, env.JWT_SECRET, "HS256"), /sub, role or exp/],
      ["unknown role", await sign({ sub: "auth-forged", role: "superuser", exp }, env.JWT_SECRET, "HS256"), /sub, role or exp/],
      ["empty sub", await sign({ sub: "", role: "buyer", exp }, env.JWT_SECRET, "HS256"), /sub, role or exp/],
      [
        "far-future exp",
        await sign({ sub: "auth-forged", role: "buyer", exp: nowSeconds() + 365 * 86_400 }, env.JWT_SECRET, "HS256"),
        /lifetime/,
      ],
    ];
    for (const [name, token, detail] of cases) {
      const res = await send(a, "/anyone", bearer(token));
      expect(res.status, name).toBe(401);
      await expectProblem(res, 401, "unauthorized", detail);
      // RFC 7235 §3.1: every 401 names the scheme to use (docs/api.md: `WWW-Authenticate: Bearer`).
      expect(res.headers.get("WWW-Authenticate"), name).toBe("Bearer");
    }
    expect(seen).toEqual([]);
  });
});

describe("auth: 403 forbidden", () => {
  it("refuses a valid token of another role, names the roles needed, and never runs the handler", async () => {
    const { a, seen } = app();
    const buyer = await issueToken({ sub: "auth-buyer", role: "buyer" }, env.JWT_SECRET);
    const organizer = await issueToken({ sub: "auth-org2", role: "organizer" }, env.JWT_SECRET);
    await expectProblem(await send(a, "/staff", bearer(buyer)), 403, "forbidden", /organizer or admin/);
    await expectProblem(await send(a, "/buyer", bearer(organizer)), 403, "forbidden", /buyer/);
    expect(seen).toEqual([]);
  });
});

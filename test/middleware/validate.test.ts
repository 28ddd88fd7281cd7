import { describe, expect, it } from "vitest";
import { z } from "zod";
import { validate } from "../../workers/middleware/validate";
import type { Problem } from "../helpers";
import { send, tinyApp } from "./tiny-app";

const body = z.strictObject({
  name: z.string().min(1).max(20),
  quantity: z.number().int().min(1).max(10).default(1),
  tags: z.array(z.string()).max(3).optional(),
});
const query = z.strictObject({ limit: z.coerce.number().int().min(1).max(100).default(50) });
const param = z.object({ id: z.string().regex(/^ev_[a-z0-9]{4}$/, "not an event id") });
const header = z.object({ "x-queue-ticket": z.string().regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, "not a queue ticket") });

/** One route per validation target; each handler echoes the parsed value and counts its runs. */
function app() {
  let runs = 0;
  const a = tinyApp();
  a.post("/json", validate("json", body), (c) => {
    runs++;
    return c.json({ seen: c.req.valid("json") });
  });
  a.get("/query", validate("query", query), (c) => {
    runs++;
    return c.json({ seen: c.req.valid("query") });
  });
  a.get("/items/:id", validate("param", param), (c) => {
    runs++;
    return c.json({ seen: c.req.valid("param") });
  });
  a.get("/header", validate("header", header), (c) => {
    runs++;
    return c.json({ seen: c.req.valid("header")["x-queue-ticket"] });
  });
  return { a, runs: () => runs };
}

const post = (raw: string, contentType: string | null = "application/json"): RequestInit => ({
  method: "POST",
  body: raw,
  headers: contentType === null ? {} : { "Content-Type": contentType },
});

async function problem(res: Response, status: number, code: string): Promise<Problem> {
  expect(res.status).toBe(status);
  expect(res.headers.get("Content-Type")).toBe("application/problem+json");
  const p = (await res.json()) as Problem;
  expect(p.code).toBe(code);
  return p;
}

describe("validate('json')", () => {
  it("hands the handler the parsed body, defaults applied", async () => {
    const { a } = app();
    const res = await send(a, "/json", post(JSON.stringify({ name: "Ada" })));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ seen: { name: "Ada", quantity: 1 } });
  });

  it("accepts application/json with parameters, in any case, and +json media types", async () => {
    const { a } = app();
    for (const type of [
      "application/json; charset=utf-8",
      "Application/JSON",
      "application/merge-patch+json",
      "application/vnd.api+json;charset=UTF-8",
    ]) {
      const res = await send(a, "/json", post(JSON.stringify({ name: "Ada", quantity: 2 }), type));
      expect(res.status, type).toBe(200);
      expect(await res.json()).toEqual({ seen: { name: "Ada", quantity: 2 } });
    }
  });

  it("answers 415 unsupported_media_type for a missing or other content type, before parsing", async () => {
    const { a, runs } = app();
    for (const type of [
      null,
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/jsonx",
      "json",
      "",
    ]) {
      const res = await send(a, "/json", post(JSON.stringify({ name: "Ada" }), type));
      await problem(res, 415, "unsupported_media_type");
    }
    expect(runs()).toBe(0);
  });

  it("answers 400 validation_failed for malformed or empty JSON", async () => {
    const { a, runs } = app();
    for (const raw of ["{", "{'name':'Ada'}", "", "undefined", '{"name":"Ada"} trailing']) {
      const p = await problem(await send(a, "/json", post(raw)), 400, "validation_failed");
      expect(p.detail, raw).toMatch(/malformed|json/i);
    }
    expect(runs()).toBe(0);
  });

  it("lists every invalid field, with unknown fields and wrong types, and runs no handler", async () => {
    const { a, runs } = app();
    const res = await send(a, "/json", post(JSON.stringify({ name: "", quantity: 11.5, tags: ["a", "b", "c", "d"], admin: true })));
    const p = await problem(res, 400, "validation_failed");
    expect(p.detail).toBe("The request body is not valid.");
    expect(p.errors?.map((e) => e.path).sort()).toEqual(["(root)", "name", "quantity", "tags"]);
    for (const e of p.errors ?? []) expect(e.message.length).toBeGreaterThan(0);
    expect(runs()).toBe(0);
  });

  it("reports a body of the wrong shape at the root", async () => {
    const { a } = app();
    for (const raw of ["[]", "null", '"Ada"', "42"]) {
      const p = await problem(await send(a, "/json", post(raw)), 400, "validation_failed");
      expect(p.errors?.[0]?.path, raw).toBe("(root)");
    }
  });

  it("keeps the problem small: at most 50 field issues", async () => {
    const many = z.array(z.number());
    const a = tinyApp();
    a.post("/many", validate("json", many), (c) => c.json(c.req.valid("json")));
    const p = await problem(
      await send(a, "/many", post(JSON.stringify(Array.from({ length: 200 }, (_, i) => `n${i}`)))),
      400,
      "validation_failed",
    );
    expect(p.errors).toHaveLength(50);
    expect(p.errors?.[0]?.path).toBe("0");
  });
});

describe("validate('query' | 'param' | 'header')", () => {
  it("coerces and defaults query values, and refuses bad or unknown ones", async () => {
    const { a, runs } = app();
    expect(await (await send(a, "/query?limit=7")).json()).toEqual({ seen: { limit: 7 } });
    expect(await (await send(a, "/query")).json()).toEqual({ seen: { limit: 50 } });
    for (const q of ["limit=0", "limit=abc", "limit=1.5", "limit=101", "other=1"]) {
      const p = await problem(await send(a, `/query?${q}`), 400, "validation_failed");
      expect(p.detail, q).toBe("The query is not valid.");
    }
    expect(runs()).toBe(2);
  });

  it("refuses a malformed path id with 400 naming the field", async () => {
    const { a, runs } = app();
    expect(await (await send(a, "/items/ev_ab12")).json()).toEqual({ seen: { id: "ev_ab12" } });
    for (const id of ["nope", "ev_AB12", "ev_ab123", "%3Cscript%3E"]) {
      const p = await problem(await send(a, `/items/${id}`), 400, "validation_failed");
      expect(p.errors).toEqual([{ path: "id", message: "not an event id" }]);
    }
    expect(runs()).toBe(1);
  });

  it("validates headers by their lower-case names; a missing or garbled one is a 400", async () => {
    const { a, runs } = app();
    expect(await (await send(a, "/header", { headers: { "X-Queue-Ticket": "abc.def" } })).json()).toEqual({ seen: "abc.def" });
    const missing = await problem(await send(a, "/header"), 400, "validation_failed");
    expect(missing.errors?.[0]?.path).toBe("x-queue-ticket");
    const garbled = await problem(await send(a, "/header", { headers: { "X-Queue-Ticket": "abc def" } }), 400, "validation_failed");
    expect(garbled.errors).toEqual([{ path: "x-queue-ticket", message: "not a queue ticket" }]);
    expect(runs()).toBe(1);
  });
});

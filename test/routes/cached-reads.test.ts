import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { catalogDb, publishEvent } from "../../lib/catalog";
import type { EventDoc } from "../../lib/event-schema";
import { metrics } from "../../lib/metrics";
import { app } from "../../workers/app";
import { answerCachedRead, catalogReadOf } from "../../workers/cached-reads";
import { call, createEvent, tokenFor } from "../helpers";

/**
 * The router-free path of catalog reads (workers/cached-reads.ts) must answer exactly as the router does,
 * account for the request the same way (both finish their answers with workers/middleware/finish.ts), and
 * leave every other request to the router.
 */

let organizer: string;
beforeAll(async () => {
  organizer = await tokenFor("org-cached", "organizer");
});
afterEach(() => {
  vi.restoreAllMocks();
});

const base = "https://breakwater.test";
const logEnv = { ...env, REQUEST_LOG: "all" };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const requests = (labels: Record<string, string | number>) => metrics.value("breakwater_http_requests_total", labels);
const lookups = (layer: string) => metrics.value("breakwater_cache_lookups_total", { layer });

/** Headers of a response, without the request id that is new on every request (checked apart). */
const stableHeaders = (res: Response) => {
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (k !== "x-request-id") out[k] = v;
  });
  return out;
};

/** Runs `fn` and returns the request log lines it wrote, parsed. */
async function logLines(fn: () => Promise<unknown> | unknown): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  vi.spyOn(console, "log").mockImplementation((line: unknown) => {
    if (typeof line === "string" && line.includes('"msg":"request"')) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  await fn();
  vi.restoreAllMocks();
  return lines;
}

describe("catalogReadOf", () => {
  it("recognizes exactly the two catalog reads", () => {
    expect(catalogReadOf(`${base}/v1/events`)).toEqual({ route: "/v1/events", path: "/v1/events" });
    expect(catalogReadOf(`${base}/v1/events/evt_0123456789abcdefghjk`)).toEqual({
      route: "/v1/events/:id",
      path: "/v1/events/evt_0123456789abcdefghjk",
      id: "evt_0123456789abcdefghjk",
    });
    for (const p of [
      "/v1/events/",
      "/v1/events?limit=5",
      "/v1/events/evt_0123456789abcdefghjk?x=1",
      "/v1/events/evt_0123456789abcdefghjk/availability",
      "/v1/events/evt_0123456789abcdefghjk/",
      "/v1/events/not-an-id",
      "/v1/eventsx",
      "/healthz",
      "/",
    ])
      expect(catalogReadOf(`${base}${p}`), p).toBeUndefined();
  });
});

describe("answers of the router-free path", () => {
  it("are the router's answers, 200 and 304 alike, with a fresh request id each and no traceparent", async () => {
    const ev = await createEvent(organizer);
    expect((await call(`/v1/events/${ev.id}`)).status).toBe(200); // fills this isolate's micro-cache
    const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const headers = { "X-Request-Id": "client-req-fast-1", traceparent: parent };
    const fast = answerCachedRead(new Request(`${base}/v1/events/${ev.id}`, { headers }), env, createExecutionContext());
    const routed = await app.fetch(new Request(`${base}/v1/events/${ev.id}`, { headers }), env, createExecutionContext());
    if (!fast) throw new Error("a fresh hit was not answered before the router");
    expect(fast.status).toBe(200);
    expect(stableHeaders(fast)).toEqual(stableHeaders(routed));
    expect(await fast.text()).toBe(await routed.text());
    for (const res of [fast, routed]) {
      expect(res.headers.get("X-Request-Id")).toBe("client-req-fast-1");
      expect(res.headers.has("traceparent")).toBe(false);
    }

    const etag = fast.headers.get("ETag") ?? "";
    const fast304 = answerCachedRead(
      new Request(`${base}/v1/events/${ev.id}`, { headers: { "If-None-Match": etag } }),
      env,
      createExecutionContext(),
    );
    const routed304 = await app.fetch(
      new Request(`${base}/v1/events/${ev.id}`, { headers: { "If-None-Match": etag } }),
      env,
      createExecutionContext(),
    );
    expect(fast304?.status).toBe(304);
    expect(routed304.status).toBe(304);
    if (!fast304) throw new Error("unreachable");
    expect(stableHeaders(fast304)).toEqual(stableHeaders(routed304));
    expect(await fast304.text()).toBe("");
    // A request id that is not a plausible id is replaced, as the middleware does.
    const weird = answerCachedRead(
      new Request(`${base}/v1/events/${ev.id}`, { headers: { "X-Request-Id": "<script>" } }),
      env,
      createExecutionContext(),
    );
    expect(weird?.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("send Strict-Transport-Security over https only (RFC 6797 §7.2), as the router does, 200 and 304 alike", async () => {
    const ev = await createEvent(organizer);
    const etag = (await call(`/v1/events/${ev.id}`)).headers.get("ETag") ?? "";
    // The prepared headers are one set per status and scheme: each of the four is held against the router.
    for (const origin of [base, "http://breakwater.test"])
      for (const [status, headers] of [
        [200, {}],
        [304, { "If-None-Match": etag }],
      ] as const) {
        const url = `${origin}/v1/events/${ev.id}`;
        const fast = answerCachedRead(new Request(url, { headers }), env, createExecutionContext());
        const routed = await app.fetch(new Request(url, { headers }), env, createExecutionContext());
        if (!fast) throw new Error("a fresh hit was not answered before the router");
        expect([fast.status, routed.status], origin).toEqual([status, status]);
        expect(stableHeaders(fast), `${origin} ${status}`).toEqual(stableHeaders(routed));
        for (const res of [fast, routed]) {
          expect(res.headers.get("X-Content-Type-Options"), origin).toBe("nosniff");
          if (origin === base) expect(res.headers.get("Strict-Transport-Security")).toBe("max-age=31536000; includeSubDomains");
          else expect(res.headers.has("Strict-Transport-Security"), origin).toBe(false);
        }
      }
    const plainRouted = await app.fetch(new Request("http://breakwater.test/healthz"), env, createExecutionContext());
    expect(plainRouted.headers.has("Strict-Transport-Security")).toBe(false);
    expect(plainRouted.headers.get("X-Frame-Options")).toBe("DENY");
  });

  it("send OWASP's headers for a JSON API, and Referrer-Policy on pages only", async () => {
    const ev = await createEvent(organizer);
    expect((await call(`/v1/events/${ev.id}`)).status).toBe(200);
    const fast = answerCachedRead(new Request(`${base}/v1/events/${ev.id}`), env, createExecutionContext());
    const routed = await app.fetch(new Request(`${base}/healthz`), env, createExecutionContext());
    const page = await app.fetch(new Request(`${base}/docs`), env, createExecutionContext());
    if (!fast) throw new Error("a fresh hit was not answered before the router");
    for (const res of [fast, routed, page]) {
      expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
      expect(res.headers.get("X-Frame-Options")).toBe("DENY");
      expect(res.headers.get("Content-Security-Policy")).toContain("frame-ancestors 'none'");
      expect(res.headers.has("Cross-Origin-Resource-Policy")).toBe(false);
    }
    for (const res of [fast, routed]) expect(res.headers.has("Referrer-Policy")).toBe(false);
    expect(page.headers.get("Content-Type")).toMatch(/^text\/html/);
    expect(page.headers.get("Referrer-Policy")).toBe("no-referrer");
  });

  it("answer the list the same way", async () => {
    await createEvent(organizer);
    expect((await call("/v1/events")).status).toBe(200);
    const fast = answerCachedRead(new Request(`${base}/v1/events`), env, createExecutionContext());
    const routed = await app.fetch(new Request(`${base}/v1/events`), env, createExecutionContext());
    if (!fast) throw new Error("a fresh list was not answered before the router");
    expect(stableHeaders(fast)).toEqual(stableHeaders(routed));
    expect(await fast.text()).toBe(await routed.text());
  });

  it("log and count each request as the router does", async () => {
    const ev = await createEvent(organizer);
    expect((await call(`/v1/events/${ev.id}`)).status).toBe(200);
    const labels = { method: "GET", route: "/v1/events/:id", status: 200 };
    const before = { requests: requests(labels), micro: lookups("micro") };
    const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const fastLines = await logLines(() =>
      answerCachedRead(
        new Request(`${base}/v1/events/${ev.id}`, { headers: { "X-Request-Id": "client-req-log-1", traceparent: parent } }),
        logEnv,
        createExecutionContext(),
      ),
    );
    expect(requests(labels)).toBe(before.requests + 1);
    expect(lookups("micro")).toBe(before.micro + 1);
    const routedLines = await logLines(() =>
      app.fetch(
        new Request(`${base}/v1/events/${ev.id}`, { headers: { "X-Request-Id": "client-req-log-2", traceparent: parent } }),
        logEnv,
        createExecutionContext(),
      ),
    );
    expect(requests(labels)).toBe(before.requests + 2);
    expect(fastLines).toHaveLength(1);
    expect(routedLines).toHaveLength(1);
    const [fastLine, routedLine] = [fastLines[0], routedLines[0]];
    expect(fastLine).toMatchObject({ requestId: "client-req-log-1", route: "/v1/events/:id", status: 200, cache: "hit:micro" });
    // Both lines continue the caller's trace, though neither answer carries a traceparent.
    for (const line of [fastLine, routedLine]) expect(line?.traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    const comparable = (l: Record<string, unknown> | undefined) => ({
      ...l,
      requestId: undefined,
      traceId: undefined,
      durationMs: undefined,
    });
    expect(comparable(fastLine)).toEqual(comparable(routedLine));
  });

  it("account for each answer with its own values, one after another", async () => {
    const ev = await createEvent(organizer);
    expect((await call(`/v1/events/${ev.id}`)).status).toBe(200);
    expect((await call("/v1/events")).status).toBe(200);
    const etag = (await call(`/v1/events/${ev.id}`)).headers.get("ETag") ?? "";
    // Copied at the call, as the Analytics Engine binding converts its argument when it is called.
    const points: AnalyticsEngineDataPoint[] = [];
    const aeEnv = {
      ...logEnv,
      METRICS_AE: { writeDataPoint: (p?: AnalyticsEngineDataPoint) => void (p && points.push(structuredClone(p))) },
    };
    const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const reads: [string, Record<string, string>][] = [
      [`/v1/events/${ev.id}`, { "X-Request-Id": "client-acct-1", traceparent: parent }],
      ["/v1/events", { "X-Request-Id": "client-acct-2" }],
      [`/v1/events/${ev.id}`, { "X-Request-Id": "client-acct-3", "If-None-Match": etag }],
    ];
    const lines = await logLines(() => {
      for (const [p, headers] of reads)
        expect(answerCachedRead(new Request(`${base}${p}`, { headers }), aeEnv, createExecutionContext())).toBeDefined();
    });
    expect(lines.map((l) => [l.requestId, l.route, l.path, l.status, l.cache])).toEqual([
      ["client-acct-1", "/v1/events/:id", `/v1/events/${ev.id}`, 200, "hit:micro"],
      ["client-acct-2", "/v1/events", "/v1/events", 200, "hit:micro"],
      ["client-acct-3", "/v1/events/:id", `/v1/events/${ev.id}`, 304, "hit:micro"],
    ]);
    // Only the first continues the caller's trace; the others start their own.
    expect(lines[0]?.traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(lines[1]?.traceId).not.toBe(lines[0]?.traceId);
    expect(lines[2]?.traceId).not.toBe(lines[1]?.traceId);
    expect(points.map((p) => ({ ...p, doubles: [typeof p.doubles?.[0], p.doubles?.[1]] }))).toEqual([
      { indexes: ["/v1/events/:id"], blobs: ["/v1/events/:id", "GET", "200", "hit:micro"], doubles: ["number", 1] },
      { indexes: ["/v1/events"], blobs: ["/v1/events", "GET", "200", "hit:micro"], doubles: ["number", 1] },
      { indexes: ["/v1/events/:id"], blobs: ["/v1/events/:id", "GET", "304", "hit:micro"], doubles: ["number", 1] },
    ]);
    expect(points.map((p) => p.doubles?.[0])).toEqual(lines.map((l) => l.durationMs));
  });

  it("make no span for a request that is neither logged nor exported", async () => {
    const ev = await createEvent(organizer);
    expect((await call(`/v1/events/${ev.id}`)).status).toBe(200);
    const req = () => new Request(`${base}/v1/events/${ev.id}`, { headers: { "X-Request-Id": "client-req-nolog" } });
    // The request id is the caller's, so any random id drawn here would be a span's.
    const drawn = vi.spyOn(crypto, "randomUUID");
    const quiet = answerCachedRead(req(), { ...env, REQUEST_LOG: "off" }, createExecutionContext());
    expect(quiet?.status).toBe(200);
    expect(drawn).not.toHaveBeenCalled();
    const lines = await logLines(() => answerCachedRead(req(), logEnv, createExecutionContext()));
    expect(lines[0]?.traceId).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe("what the router-free path leaves to the router", () => {
  it("answers nothing it does not hold fresh, and no other kind of request", async () => {
    const ev = await createEvent(organizer);
    const ctx = createExecutionContext();
    const url = `${base}/v1/events/${ev.id}`;
    // Never read in this isolate yet: the router fills it.
    expect(answerCachedRead(new Request(url), env, ctx)).toBeUndefined();
    expect((await call(`/v1/events/${ev.id}`)).status).toBe(200);
    expect(answerCachedRead(new Request(url), env, ctx)).toBeInstanceOf(Response);
    const others: Request[] = [
      new Request(url, { method: "HEAD" }),
      new Request(url, { method: "POST", body: "{}" }),
      new Request(`${url}?fields=name`),
      new Request(url, { headers: { Origin: "https://shop.example" } }),
      new Request(`${url}/availability`),
      new Request(`${base}/v1/events/evt_zzzzzzzzzzzzzzzzzzzz`),
    ];
    for (const req of others) expect(answerCachedRead(req, env, ctx), `${req.method} ${req.url}`).toBeUndefined();
    // An unknown id is answered by the router (404 problem), which caches the not-found: still the router's.
    expect((await call("/v1/events/evt_zzzzzzzzzzzzzzzzzzzz")).status).toBe(404);
    expect(answerCachedRead(new Request(`${base}/v1/events/evt_zzzzzzzzzzzzzzzzzzzz`), env, ctx)).toBeUndefined();
  });

  it("keeps an event past its second only while the manifest this isolate holds names its version", async () => {
    const [a, b] = [await createEvent(organizer), await createEvent(organizer)];
    for (const ev of [a, b]) expect((await call(`/v1/events/${ev.id}`)).status).toBe(200);
    await sleep(1_100);
    // Both documents are past their second. Reading b through the router refreshes the manifest; a is then
    // vouched for by it without awaiting anything.
    expect((await call(`/v1/events/${b.id}`)).status).toBe(200);
    const validated = lookups("validated");
    const vouched = answerCachedRead(new Request(`${base}/v1/events/${a.id}`), logEnv, createExecutionContext());
    expect(vouched?.status).toBe(200);
    expect(lookups("validated")).toBe(validated + 1);

    // a changes elsewhere (D1, KV, this data centre's Cache API; not this isolate's memory).
    await env.CATALOG_DB.prepare("UPDATE events SET name = 'Moved', version = 2 WHERE id = ?").bind(a.id).run();
    const published = await env.CATALOG_KV.get<{ event: EventDoc }>(`event:${a.id}`, "json");
    if (!published) throw new Error("event document missing from KV");
    await publishEvent({ db: catalogDb(env.CATALOG_DB), kv: env.CATALOG_KV }, { ...published.event, name: "Moved", version: 2 });
    await Promise.all([`/__cache/v1/events/${a.id}`, "/__cache/catalog-versions"].map((p) => caches.default.delete(`${base}${p}`)));
    await sleep(1_100);
    expect((await call(`/v1/events/${b.id}`)).status).toBe(200); // a fresh manifest, naming a's version 2
    expect(answerCachedRead(new Request(`${base}/v1/events/${a.id}`), env, createExecutionContext())).toBeUndefined();
    const changed = (await (await call(`/v1/events/${a.id}`)).json()) as { event: { name: string; version: number } };
    expect(changed.event).toMatchObject({ name: "Moved", version: 2 });
  });
});

import { describe, expect, it } from "vitest";
import { trace } from "../../workers/middleware/trace";
import { send, tinyApp } from "./tiny-app";

const PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

interface Seen {
  trace?: { traceId: string; spanId: string; sampled: boolean };
  parentSpanId?: string;
}

/** trace() in front of a private handler that reports what it saw, and a public (cacheable) one. */
function app() {
  const a = tinyApp();
  a.use("*", trace());
  a.get("/private", (c) => c.json({ trace: c.get("trace"), parentSpanId: c.get("parentSpanId") } satisfies Seen));
  a.get("/public", (c) => c.json({ trace: c.get("trace") } satisfies Seen, 200, { "Cache-Control": "public, max-age=1" }));
  return a;
}

describe("trace", () => {
  it("continues the caller's trace with a new span of this request, and answers with it", async () => {
    const res = await send(app(), "/private", { headers: { traceparent: PARENT } });
    const seen = (await res.json()) as Seen;
    expect(seen.trace?.traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(seen.trace?.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(seen.trace?.spanId).not.toBe("b7ad6b7169203331");
    expect(seen.trace?.sampled).toBe(true);
    expect(seen.parentSpanId).toBe("b7ad6b7169203331");
    expect(res.headers.get("traceparent")).toBe(`00-${seen.trace?.traceId}-${seen.trace?.spanId}-01`);
  });

  it("keeps the caller's not-sampled flag", async () => {
    const res = await send(app(), "/private", { headers: { traceparent: PARENT.replace(/-01$/, "-00") } });
    expect(((await res.json()) as Seen).trace?.sampled).toBe(false);
    expect(res.headers.get("traceparent")).toMatch(/-00$/);
  });

  it("starts a new trace for a missing, garbled or all-zero traceparent, with no parent span", async () => {
    const bad = [
      undefined,
      "garbage",
      "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      `00-${"0".repeat(32)}-b7ad6b7169203331-01`,
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
      "00-xyz-b7ad6b7169203331-01",
    ];
    const traceIds = new Set<string>();
    for (const value of bad) {
      const res = await send(app(), "/private", value === undefined ? {} : { headers: { traceparent: value } });
      const seen = (await res.json()) as Seen;
      expect(seen.parentSpanId, String(value)).toBeUndefined();
      expect(seen.trace?.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(seen.trace?.traceId).not.toBe("0af7651916cd43dd8448eb211c80319c");
      expect(res.headers.get("traceparent")).toMatch(TRACEPARENT);
      traceIds.add(seen.trace?.traceId as string);
    }
    expect(traceIds.size).toBe(bad.length);
  });

  it("puts no traceparent on a public answer, though the handler has its span", async () => {
    const res = await send(app(), "/public", { headers: { traceparent: PARENT } });
    expect(((await res.json()) as Seen).trace?.traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(res.headers.has("traceparent")).toBe(false);
  });

  it("does nothing with TELEMETRY=off", async () => {
    const res = await send(app(), "/private", { headers: { traceparent: PARENT }, env: { TELEMETRY: "off" } });
    expect(await res.json()).toEqual({});
    expect(res.headers.has("traceparent")).toBe(false);
  });
});

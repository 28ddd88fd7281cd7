import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startTestServer, type TestServer } from "./helpers";

/** OpenTelemetry export against a loopback OTLP/HTTP collector started by the test. */

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: { key: string; value: { stringValue?: string; intValue?: number } }[];
}

const received: OtlpSpan[] = [];
let collector: http.Server;
let server: TestServer;

beforeAll(async () => {
  collector = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
        for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) received.push(...ss.spans);
      }
      res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
    });
  });
  const collectorPort = await freePort();
  await new Promise<void>((r) => collector.listen(collectorPort, "127.0.0.1", r));
  server = await startTestServer({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collectorPort}` });
});

afterAll(async () => {
  await server?.stop();
  await new Promise((r) => collector?.close(r));
});

describe("OpenTelemetry export", () => {
  it("exports each request as a server span that continues the caller's trace", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parent = `00-${traceId}-00f067aa0ba902b7-01`;
    for (let i = 0; i < 100; i++) {
      const res = await fetch(`${server.url}/healthz`, { headers: { traceparent: parent } });
      expect(res.headers.get("traceparent")).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
      await res.arrayBuffer();
    }
    // Spans are batched per isolate (100 or 5 s); a request after 5 s flushes what is pending.
    await new Promise((r) => setTimeout(r, 5_200));
    await (await fetch(`${server.url}/healthz`, { headers: { traceparent: parent } })).arrayBuffer();
    const deadline = Date.now() + 10_000;
    while (received.filter((s) => s.traceId === traceId).length < 101 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    const spans = received.filter((s) => s.traceId === traceId);
    expect(spans.length).toBe(101);
    expect(new Set(spans.map((s) => s.spanId)).size).toBe(101);
    expect(spans.every((s) => s.parentSpanId === "00f067aa0ba902b7" && s.name === "GET /healthz")).toBe(true);
    const status = spans[0]?.attributes.find((a) => a.key === "http.response.status_code");
    expect(status?.value.intValue).toBe(200);
  });
});

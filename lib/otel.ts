import { log } from "./log";
import type { TraceContext } from "./trace";

/**
 * Optional OpenTelemetry export: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, each request's span is sent
 * to the collector as OTLP/HTTP JSON (`POST {endpoint}/v1/traces`), batched per isolate (at most 100
 * spans or 5 s), in the background (`waitUntil`). A failed export is logged and dropped: tracing never
 * slows or fails a request.
 */

/** One finished span. */
export interface SpanRecord {
  trace: TraceContext;
  parentSpanId?: string;
  name: string;
  startMs: number;
  endMs: number;
  attributes: Record<string, string | number>;
  error: boolean;
}

const pending: SpanRecord[] = [];
let lastFlush = Date.now();
const MAX_BATCH = 100;
const MAX_WAIT_MS = 5_000;

const attr = (key: string, v: string | number) => ({
  key,
  value: typeof v === "number" ? (Number.isInteger(v) ? { intValue: v } : { doubleValue: v }) : { stringValue: v },
});
const nanos = (ms: number) => `${BigInt(Math.round(ms * 1000)) * 1000n}`;

/** The OTLP/HTTP JSON body of a batch of spans. */
function otlpBody(spans: SpanRecord[], service = "breakwater"): Record<string, unknown> {
  return {
    resourceSpans: [
      {
        resource: { attributes: [attr("service.name", service)] },
        scopeSpans: [
          {
            scope: { name: "breakwater-edge" },
            spans: spans.map((s) => ({
              traceId: s.trace.traceId,
              spanId: s.trace.spanId,
              ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
              name: s.name,
              kind: 2, // SERVER
              startTimeUnixNano: nanos(s.startMs),
              endTimeUnixNano: nanos(s.endMs),
              attributes: Object.entries(s.attributes).map(([k, v]) => attr(k, v)),
              status: { code: s.error ? 2 : 1 },
            })),
          },
        ],
      },
    ],
  };
}

/** Queues a span; returns a flush promise when the batch is due (give it to `waitUntil`). */
export function recordSpan(endpoint: string, span: SpanRecord): Promise<void> | null {
  pending.push(span);
  const now = Date.now();
  if (pending.length < MAX_BATCH && now - lastFlush < MAX_WAIT_MS) return null;
  lastFlush = now;
  const batch = pending.splice(0, pending.length);
  return fetch(`${endpoint.replace(/\/$/, "")}/v1/traces`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(otlpBody(batch)),
  }).then(
    async (res) => {
      if (!res.ok) log.warn("OTLP export refused", { status: res.status, spans: batch.length });
      await res.body?.cancel();
    },
    (err: unknown) => log.warn("OTLP export failed; spans dropped", { spans: batch.length, error: String(err) }),
  );
}

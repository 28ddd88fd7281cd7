/**
 * W3C Trace Context (`traceparent: 00-<trace-id>-<parent-id>-<flags>`). The edge accepts an incoming
 * traceparent or starts a trace, and passes it on explicitly: to Durable Object calls (as an argument) and
 * in queue messages (as a field), so one order can be followed from the request through the DO to the
 * consumer that writes its shard row. Every log line about that work carries `traceId`.
 */

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A parsed trace context. */
export interface TraceContext {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

/** 32 random hex digits from the runtime's native UUID generator (cheaper than formatting bytes in JS). */
const hex32 = (): string => crypto.randomUUID().replaceAll("-", "");

/** Parses a traceparent header; null when absent or malformed (all-zero ids are invalid per the spec). */
export function parseTraceparent(value: string | undefined | null): TraceContext | null {
  const m = value ? TRACEPARENT.exec(value.trim().toLowerCase()) : null;
  if (!m) return null;
  const [, traceId, spanId, flags] = m as unknown as [string, string, string, string];
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return null;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/** A child span of `parent` (or a new root trace). */
export function childSpan(parent: TraceContext | null): TraceContext {
  return { traceId: parent?.traceId ?? hex32(), spanId: hex32().slice(0, 16), sampled: parent?.sampled ?? true };
}

/** The traceparent header value of a context. */
export const formatTraceparent = (t: TraceContext): string => `00-${t.traceId}-${t.spanId}-${t.sampled ? "01" : "00"}`;

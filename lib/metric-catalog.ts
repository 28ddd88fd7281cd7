/**
 * Every metric Breakwater emits: its name, type, labels and meaning. Names and labels are a public
 * interface (dashboards and alerts depend on them): add freely, never rename or repurpose. The README's
 * "Metrics" table is generated from this list (`npm run docs:metrics`) and a test checks that the source
 * emits nothing that is not listed here.
 */
export interface MetricSpec {
  name: string;
  type: "counter" | "gauge" | "histogram";
  labels: string[];
  help: string;
}

export const METRIC_CATALOG: readonly MetricSpec[] = [
  {
    name: "breakwater_http_requests_total",
    type: "counter",
    labels: ["method", "route", "status"],
    help: "HTTP requests by route pattern and status",
  },
  { name: "breakwater_http_request_duration_ms", type: "histogram", labels: ["route"], help: "HTTP request duration at the edge (ms)" },
  {
    name: "breakwater_cache_lookups_total",
    type: "counter",
    labels: ["layer"],
    help: "Cached reads by the layer that answered: micro, validated, coalesced, edge (hits); kv, origin (misses)",
  },
  { name: "breakwater_d1_queries_total", type: "counter", labels: ["db"], help: "D1 statements executed, by database" },
  {
    name: "breakwater_holds_total",
    type: "counter",
    labels: ["result", "kind"],
    help: "Hold attempts by result (created or an error code) and section kind",
  },
  { name: "breakwater_do_overloads_total", type: "counter", labels: ["what"], help: "Durable Object calls refused as overloaded or reset" },
  {
    name: "breakwater_checkouts_total",
    type: "counter",
    labels: ["result"],
    help: "Checkouts by result: paid, pending (a card payment Stripe settles later), declined, provider_unavailable, refunded",
  },
  { name: "breakwater_payments_total", type: "counter", labels: ["provider", "outcome"], help: "Payment provider attempts by outcome" },
  { name: "breakwater_refunds_total", type: "counter", labels: ["reason"], help: "Charges refunded because no order could be made" },
  { name: "breakwater_breaker_state", type: "gauge", labels: ["breaker"], help: "Circuit breaker state: 0 closed, 1 half-open, 2 open" },
  { name: "breakwater_breaker_trips_total", type: "counter", labels: ["breaker"], help: "Times a circuit breaker opened" },
  {
    name: "breakwater_catalog_publish_failures_total",
    type: "counter",
    labels: [],
    help: "Catalog KV publishes that failed after a saved change (the cron republishes)",
  },
  {
    name: "breakwater_queue_send_failures_total",
    type: "counter",
    labels: ["queue"],
    help: "Queue sends that failed (the DO outbox retries them)",
  },
  {
    name: "breakwater_waiting_room_do_calls_total",
    type: "counter",
    labels: ["method"],
    help: "Calls from the edge to WaitingRoom DOs (should scale with isolates, not buyers)",
  },
  {
    name: "breakwater_ratelimit_decisions_total",
    type: "counter",
    labels: ["route", "result"],
    help: "Rate-limit decisions: allowed, refused, blocked_cached (refused from isolate memory, no store call), failed_open, failed_closed (store unreachable)",
  },
  {
    name: "breakwater_ratelimit_do_calls_total",
    type: "counter",
    labels: ["route"],
    help: "Calls to the rate-limit store: Limiter DOs, or Upstash when RATE_LIMITS selects it",
  },
  {
    name: "breakwater_ratelimit_errors_total",
    type: "counter",
    labels: ["route"],
    help: "Rate-limit store calls that failed or timed out (fail open: the request went through; fail closed: 503)",
  },
  {
    name: "breakwater_queue_messages_total",
    type: "counter",
    labels: ["queue", "action"],
    help: "Queue messages by outcome: sent, acked, retried, invalid, dead_lettered",
  },
  {
    name: "breakwater_reconciliation_discrepancies",
    type: "gauge",
    labels: ["kind"],
    help: "Discrepancies found by the last reconciliation: missing, extra, duplicated",
  },
  { name: "breakwater_cron_step_duration_ms", type: "histogram", labels: ["step"], help: "Duration of each cron step (ms)" },
  { name: "breakwater_cron_failures_total", type: "counter", labels: ["step"], help: "Cron steps that failed" },
  {
    name: "breakwater_analytics_send_failures_total",
    type: "counter",
    labels: ["kind"],
    help: "Analytics events that could not be queued (logged; analytics are best effort)",
  },
  {
    name: "breakwater_do_call_duration_ms",
    type: "histogram",
    labels: ["object", "method"],
    help: "Durable Object call latency seen from the edge, queueing included (ms)",
  },
  { name: "breakwater_holds_expired_total", type: "counter", labels: [], help: "Holds that expired; their seats returned to sale" },
];

/** Lookup by name. */
export const metricSpec = (name: string): MetricSpec | undefined => METRIC_CATALOG.find((m) => m.name === name);

/** The README table. */
export function metricsMarkdown(): string {
  const rows = METRIC_CATALOG.map(
    (m) => `| \`${m.name}\` | ${m.type} | ${m.labels.map((l) => `\`${l}\``).join(", ") || "—"} | ${m.help} |`,
  );
  return ["| metric | type | labels | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

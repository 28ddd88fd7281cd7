import { type Counter, counter, type Gauge, gauge, type Histogram, histogram, type MetricSpec } from "./metrics";

/**
 * Every metric Breakwater emits, declared once: name, type, labels and meaning. Code updates a metric only
 * through its handle here (`metric.checkouts.inc({ result: "paid" })`), so /metrics prints this help text
 * and a label outside the declared set does not type-check. Names and labels are a public interface
 * (dashboards and alerts depend on them): add freely, never rename or repurpose. The README's "Metrics"
 * table is generated from this list (`npm run docs:metrics`).
 */
export const metric = {
  httpRequests: counter({
    name: "breakwater_http_requests_total",
    help: "HTTP requests by route pattern and status",
    labels: ["method", "route", "status"],
  }),
  httpRequestDurationMs: histogram({
    name: "breakwater_http_request_duration_ms",
    help: "HTTP request duration at the edge (ms)",
    labels: ["route"],
  }),
  cacheLookups: counter({
    name: "breakwater_cache_lookups_total",
    help: "Cached reads by the layer that answered: micro, validated, coalesced, edge (hits); kv, origin (misses)",
    labels: ["layer"],
  }),
  d1Queries: counter({
    name: "breakwater_d1_queries_total",
    help: "D1 statements executed, by database",
    labels: ["db"],
  }),
  holds: counter({
    name: "breakwater_holds_total",
    help: "Hold attempts by result (created or an error code) and section kind",
    labels: ["result", "kind"],
  }),
  capacityMoves: counter({
    name: "breakwater_capacity_moves_total",
    help: "Places moved between the shards of a GA section so one hold could have them together (a hold of several places when no shard had as many)",
    labels: [],
  }),
  checkIns: counter({
    name: "breakwater_check_ins_total",
    help: "Ticket check-ins at the gates by result: checked_in, already_checked_in, ticket_void, not_found (a forged code, another event's, or a ticket never sold)",
    labels: ["result"],
  }),
  checkInWebhookRetries: counter({
    name: "breakwater_check_in_webhook_retries_total",
    help: "ticket.checked_in webhooks the notifications queue refused; each stays in its Inventory DO's outbox and is re-sent by its alarm",
    labels: [],
  }),
  doOverloads: counter({
    name: "breakwater_do_overloads_total",
    help: "Durable Object calls refused as overloaded or reset",
    labels: ["what"],
  }),
  checkouts: counter({
    name: "breakwater_checkouts_total",
    help: "Checkouts by result: paid, pending (a card payment Stripe settles later), declined, provider_unavailable, refunded",
    labels: ["result"],
  }),
  payments: counter({
    name: "breakwater_payments_total",
    help: "Payment provider attempts by outcome",
    labels: ["provider", "outcome"],
  }),
  refunds: counter({
    name: "breakwater_refunds_total",
    help: "Refunds the provider confirmed, by reason (a checkout that could not make its order, an organizer refund, an event cancelled)",
    labels: ["reason"],
  }),
  breakerState: gauge({
    name: "breakwater_breaker_state",
    help: "Circuit breaker state: 0 closed, 1 half-open, 2 open",
    labels: ["breaker"],
  }),
  breakerTrips: counter({
    name: "breakwater_breaker_trips_total",
    help: "Times a circuit breaker opened",
    labels: ["breaker"],
  }),
  queueSendFailures: counter({
    name: "breakwater_queue_send_failures_total",
    help: "Queue sends that failed (the DO outbox retries them)",
    labels: ["queue"],
  }),
  waitingRoomDoCalls: counter({
    name: "breakwater_waiting_room_do_calls_total",
    help: "Calls from the edge to WaitingRoom DOs (should scale with isolates, not buyers)",
    labels: ["method"],
  }),
  ratelimitDecisions: counter({
    name: "breakwater_ratelimit_decisions_total",
    help: "Rate-limit decisions: allowed, refused, blocked_cached (refused from isolate memory, no store call), failed_open, failed_closed (store unreachable)",
    labels: ["route", "result"],
  }),
  ratelimitDoCalls: counter({
    name: "breakwater_ratelimit_do_calls_total",
    help: "Calls to the rate-limit store: Limiter DOs, or Upstash when RATE_LIMITS selects it",
    labels: ["route"],
  }),
  ratelimitErrors: counter({
    name: "breakwater_ratelimit_errors_total",
    help: "Rate-limit store calls that failed or timed out (fail open: the request went through; fail closed: 503)",
    labels: ["route"],
  }),
  queueMessages: counter({
    name: "breakwater_queue_messages_total",
    help: "Queue messages by outcome: sent, acked, retried, invalid, dead_lettered",
    labels: ["queue", "action"],
  }),
  reconciliationDiscrepancies: gauge({
    name: "breakwater_reconciliation_discrepancies",
    help: "Discrepancies found by the last reconciliation: missing, extra, duplicated",
    labels: ["kind"],
  }),
  cronStepDurationMs: histogram({
    name: "breakwater_cron_step_duration_ms",
    help: "Duration of each cron step (ms)",
    labels: ["step"],
  }),
  cronFailures: counter({
    name: "breakwater_cron_failures_total",
    help: "Cron steps that failed",
    labels: ["step"],
  }),
  analyticsSendFailures: counter({
    name: "breakwater_analytics_send_failures_total",
    help: "Analytics events that could not be queued (logged; analytics are best effort)",
    labels: ["kind"],
  }),
  doCallDurationMs: histogram({
    name: "breakwater_do_call_duration_ms",
    help: "Durable Object call latency seen from the edge, queueing included (ms)",
    labels: ["object", "method"],
  }),
  groupCommitSize: histogram({
    name: "breakwater_group_commit_size",
    help: "Requests whose writes a Durable Object committed together (lib/group-commit.ts)",
    labels: ["object"],
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
  }),
  holdsExpired: counter({
    name: "breakwater_holds_expired_total",
    help: "Holds that expired; their seats returned to sale",
    labels: [],
  }),
  catalogPublishFailures: counter({
    name: "breakwater_catalog_publish_failures_total",
    help: "Catalog KV publishes that failed after a saved change (the cron republishes)",
    labels: [],
  }),
  deadLettersLastResort: counter({
    name: "breakwater_dead_letters_last_resort_total",
    help: "Dead letters parked in KV because D1 could not take them (moved into D1 by the cron)",
    labels: ["queue"],
  }),
  deadLettersLost: counter({
    name: "breakwater_dead_letters_lost_total",
    help: "Dead letters that neither D1 nor the KV last resort took on their last attempts (body in the log)",
    labels: ["queue"],
  }),
} as const;

type AnyHandle = Counter<string> | Gauge<string> | Histogram<string>;

/** The declarations, in catalog order. */
export const METRIC_CATALOG: readonly MetricSpec[] = Object.values(metric as Record<string, AnyHandle>).map((h) => h.spec);

/** The README table. */
export function metricsMarkdown(): string {
  const rows = METRIC_CATALOG.map(
    (m) => `| \`${m.name}\` | ${m.type} | ${m.labels.map((l) => `\`${l}\``).join(", ") || "—"} | ${m.help} |`,
  );
  return ["| metric | type | labels | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

/**
 * Problem documents (RFC 9457) and the closed set of error codes of API.md.
 *
 * Domain code throws {@link ApiError}; the app's `onError` and the validator hook both turn it into the
 * same envelope with {@link problemResponse}. Nothing else builds error bodies.
 */

/** Stable machine-readable codes. Clients switch on these; never rename one. */
export type ErrorCode =
  | "validation_failed"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "method_not_allowed"
  | "sale_not_started"
  | "not_admitted"
  | "seats_unavailable"
  | "sold_out"
  | "limit_exceeded"
  | "hold_expired"
  | "hold_not_active"
  | "payment_declined"
  | "idempotency_conflict"
  | "already_checked_in"
  | "ticket_void"
  | "idempotency_mismatch"
  | "rate_limited"
  | "overloaded"
  | "payload_too_large"
  | "unsupported_media_type"
  | "internal_error"
  | "not_refundable"
  | "event_cancelled";

/** HTTP status for each code. */
export const codeToStatus = {
  validation_failed: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  sale_not_started: 403,
  not_admitted: 403,
  seats_unavailable: 409,
  sold_out: 409,
  limit_exceeded: 422,
  hold_expired: 410,
  hold_not_active: 409,
  payment_declined: 402,
  idempotency_conflict: 409,
  already_checked_in: 409,
  ticket_void: 410,
  idempotency_mismatch: 422,
  rate_limited: 429,
  overloaded: 503,
  payload_too_large: 413,
  unsupported_media_type: 415,
  internal_error: 500,
  not_refundable: 409,
  event_cancelled: 409,
} as const satisfies Record<ErrorCode, number>;

const titles: Record<ErrorCode, string> = {
  validation_failed: "The request is not valid",
  unauthorized: "Authentication is required",
  forbidden: "You may not do this",
  not_found: "Not found",
  method_not_allowed: "Method not allowed",
  sale_not_started: "The sale has not started",
  not_admitted: "Not admitted by the waiting room",
  seats_unavailable: "Those seats are not available",
  sold_out: "Sold out",
  limit_exceeded: "Per-customer limit exceeded",
  hold_expired: "The hold has expired",
  hold_not_active: "The hold is not active",
  payment_declined: "The payment was declined",
  idempotency_conflict: "A request with this Idempotency-Key is in flight",
  already_checked_in: "The ticket was already checked in",
  ticket_void: "The ticket is void",
  idempotency_mismatch: "This Idempotency-Key was used with a different request",
  rate_limited: "Too many requests",
  overloaded: "The service is overloaded",
  payload_too_large: "The request body is too large",
  unsupported_media_type: "Unsupported media type",
  internal_error: "Internal error",
  not_refundable: "The ticket cannot be refunded",
  event_cancelled: "The event is cancelled",
};

/** One field-level problem, as reported for `validation_failed`. */
export interface FieldIssue {
  path: string;
  message: string;
}

/** The JSON body of every error response. */
interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  requestId: string;
  errors?: FieldIssue[];
  retryAfterSeconds?: number;
  /** Extension members of the code (RFC 9457 §3.2), e.g. `checkedInAt` of `already_checked_in`. */
  [extension: string]: unknown;
}

/** An error with a code of API.md. Throw it from anywhere; it becomes a problem response. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly errors?: FieldIssue[];
  readonly retryAfterSeconds?: number;
  readonly headers?: Record<string, string>;
  readonly extensions?: Record<string, string>;

  constructor(
    code: ErrorCode,
    detail?: string,
    extra: {
      errors?: FieldIssue[];
      retryAfterSeconds?: number;
      headers?: Record<string, string>;
      extensions?: Record<string, string>;
    } = {},
  ) {
    super(detail ?? titles[code]);
    this.name = "ApiError";
    this.code = code;
    this.status = codeToStatus[code];
    this.errors = extra.errors;
    this.retryAfterSeconds = extra.retryAfterSeconds;
    this.headers = extra.headers;
    this.extensions = extra.extensions;
  }
}

/** The body of a problem response. */
function problemDocument(err: ApiError, requestId: string): ProblemDocument {
  const doc: ProblemDocument = {
    ...err.extensions,
    type: `https://breakwater.dev/problems/${err.code.replaceAll("_", "-")}`,
    title: titles[err.code],
    status: err.status,
    detail: err.message,
    code: err.code,
    requestId,
  };
  if (err.errors?.length) doc.errors = err.errors;
  if (err.retryAfterSeconds !== undefined) doc.retryAfterSeconds = err.retryAfterSeconds;
  return doc;
}

/** A complete `application/problem+json` response for an ApiError. */
export function problemResponse(err: ApiError, requestId: string): Response {
  const headers = new Headers({ "Content-Type": "application/problem+json", "X-Request-Id": requestId });
  if (err.retryAfterSeconds !== undefined) headers.set("Retry-After", String(Math.max(1, Math.ceil(err.retryAfterSeconds))));
  for (const [k, v] of Object.entries(err.headers ?? {})) headers.set(k, v);
  return new Response(JSON.stringify(problemDocument(err, requestId)), { status: err.status, headers });
}

/**
 * Results crossing a Durable Object RPC boundary lose their class, so DOs return this tagged failure
 * instead of throwing for expected outcomes (sold out, limit exceeded…). {@link unwrap} rethrows it.
 */
export type Outcome<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; detail: string; retryAfterSeconds?: number };

/** Success outcome. */
export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
/** Failure outcome with a code of API.md. */
export const fail = <T = never>(code: ErrorCode, detail: string, retryAfterSeconds?: number): Outcome<T> =>
  retryAfterSeconds === undefined ? { ok: false, code, detail } : { ok: false, code, detail, retryAfterSeconds };

/** The value of a successful outcome, or the ApiError of a failed one. */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  throw new ApiError(outcome.code, outcome.detail, { retryAfterSeconds: outcome.retryAfterSeconds });
}

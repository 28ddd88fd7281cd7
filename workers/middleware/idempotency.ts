import type { MiddlewareHandler } from "hono";
import { ledgerStub } from "../../lib/holds";
import { ApiError } from "../../lib/problem";
import { sha256Hex } from "../../lib/signing";
import type { AppEnv } from "../types";

/** Options of {@link idempotency}. */
export interface IdempotencyOptions {
  /** Header carrying the key. */
  header?: string;
}

const KEY = /^[\x21-\x7e]{1,255}$/;
/** Headers of the first answer that a replay repeats (the rest are per request: id, trace, rate limits). */
const REPLAYED_HEADERS = ["Location", "ETag", "Cache-Control", "Retry-After"];

/**
 * `Idempotency-Key` for unsafe requests (API.md). Runs after `auth()`: keys are scoped to the buyer and
 * kept in their CustomerLedger DO. Same key + same request → the first response replayed with
 * `Idempotency-Replayed: true`; same key + different request → 422 `idempotency_mismatch`; same key while
 * the first is in flight → 409 `idempotency_conflict`. Responses of 5xx are not stored, so the client
 * may retry the same request under the same key; the key keeps its fingerprint, so another request under
 * it is still 422. A replay repeats the first answer's status, body and {@link REPLAYED_HEADERS}.
 */
export const idempotency = (opts: IdempotencyOptions = {}): MiddlewareHandler<AppEnv> => {
  const header = opts.header ?? "Idempotency-Key";
  return async function idempotency(c, next) {
    const key = c.req.header(header);
    if (key === undefined) return next();
    if (!KEY.test(key))
      throw new ApiError("validation_failed", `${header} must be 1-255 visible ASCII characters.`, {
        errors: [{ path: header, message: "invalid" }],
      });
    const principal = c.get("principal");
    const body = c.req.method === "GET" || c.req.method === "HEAD" ? "" : await c.req.text();
    const fingerprint = await sha256Hex(`${c.req.method} ${c.req.path}\n${body}`);
    const ledger = ledgerStub(c.env.CUSTOMER_LEDGER, principal.sub);
    const begin = await ledger.beginIdempotent(key, fingerprint);
    if (begin.kind === "mismatch") throw new ApiError("idempotency_mismatch", "This Idempotency-Key was used with a different request.");
    if (begin.kind === "in_flight")
      throw new ApiError("idempotency_conflict", "The first request with this Idempotency-Key is still in progress.", {
        retryAfterSeconds: 1,
      });
    if (begin.kind === "replay") {
      const headers = new Headers(begin.headers);
      headers.set("Content-Type", begin.contentType);
      headers.set("Idempotency-Replayed", "true");
      return new Response(begin.status === 204 ? null : begin.body, { status: begin.status, headers });
    }
    try {
      await next();
    } catch (err) {
      await ledger.abandonIdempotent(key, err instanceof ApiError ? err.status : 500);
      throw err;
    }
    if (c.res.status >= 500) {
      await ledger.abandonIdempotent(key, c.res.status);
      return;
    }
    const stored = await c.res.clone().text();
    const replayed: [string, string][] = [];
    for (const name of REPLAYED_HEADERS) {
      const value = c.res.headers.get(name);
      if (value !== null) replayed.push([name, value]);
    }
    await ledger.completeIdempotent(key, c.res.status, stored, c.res.headers.get("Content-Type") ?? "application/json", replayed);
  };
};

import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../types";

/** Options of {@link securityHeaders}. */
export interface SecurityHeadersOptions {
  /** Extra or overriding headers. */
  headers?: Record<string, string>;
}

/** The headers every answer carries (unless a route sets its own value). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
  "Cross-Origin-Resource-Policy": "same-site",
  "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
};

/**
 * Static security headers for an API that serves JSON. Pages that need scripts (`/docs`) set their own
 * Content-Security-Policy, which this keeps.
 */
export const securityHeaders = (opts: SecurityHeadersOptions = {}): MiddlewareHandler<AppEnv> => {
  const entries = Object.entries({ ...SECURITY_HEADERS, ...opts.headers });
  return async function securityHeaders(c, next) {
    await next();
    const h = c.res.headers;
    for (const [k, v] of entries) if (!h.has(k)) h.set(k, v);
  };
};

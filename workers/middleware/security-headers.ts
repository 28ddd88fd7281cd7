import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../types";

/** Options of {@link securityHeaders}. */
export interface SecurityHeadersOptions {
  /** Extra or overriding headers. */
  headers?: Record<string, string>;
}

/**
 * The headers every answer carries (unless a route sets its own value); HSTS is added over https only.
 * They are OWASP's set for a JSON API (REST Security Cheat Sheet, "Security Headers"): `nosniff` so a
 * browser never reads an answer as anything but its `Content-Type`; `frame-ancestors 'none'` (and
 * `X-Frame-Options` for older browsers) so no answer can be framed; `default-src 'none'` so one rendered
 * by mistake runs and loads nothing. Every header costs the runtime work on every answer, so headers
 * that do nothing for JSON are not sent:
 * `Referrer-Policy` goes on pages only ({@link PAGE_HEADERS}), and `Cross-Origin-Resource-Policy` is not
 * sent (it guards answers loaded without CORS, which cannot carry the bearer token that private answers
 * need; public answers are public).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
};

/** What HTML answers (`/docs`, the operations page) carry besides: their links must not leak the page's URL. */
const PAGE_HEADERS: Readonly<Record<string, string>> = { "Referrer-Policy": "no-referrer" };

const SECURE_HEADERS = { ...SECURITY_HEADERS, "Strict-Transport-Security": "max-age=31536000; includeSubDomains" } as const;

/**
 * {@link SECURITY_HEADERS} plus `Strict-Transport-Security` when the request came over https. RFC 6797
 * §7.2: a server must not send HSTS over plain http (a browser ignores it there, and a local
 * `http://127.0.0.1` answer would tell it nothing true). In production every request is https.
 */
export const securityHeadersOf = (secure: boolean): Readonly<Record<string, string>> => (secure ? SECURE_HEADERS : SECURITY_HEADERS);

/** Whether a request URL came over https. */
export const isSecure = (url: string): boolean => url.startsWith("https:");

/**
 * Static security headers for an API that serves JSON, plus {@link PAGE_HEADERS} on HTML answers. Pages
 * that need scripts (`/docs`) set their own Content-Security-Policy, which this keeps.
 */
export const securityHeaders = (opts: SecurityHeadersOptions = {}): MiddlewareHandler<AppEnv> => {
  const entriesOf = (secure: boolean) => Object.entries({ ...securityHeadersOf(secure), ...opts.headers });
  const entries = { secure: entriesOf(true), plain: entriesOf(false) };
  const pageEntries = Object.entries(PAGE_HEADERS);
  return async function securityHeaders(c, next) {
    await next();
    const h = c.res.headers;
    for (const [k, v] of isSecure(c.req.url) ? entries.secure : entries.plain) if (!h.has(k)) h.set(k, v);
    if (h.get("Content-Type")?.startsWith("text/html")) for (const [k, v] of pageEntries) if (!h.has(k)) h.set(k, v);
  };
};

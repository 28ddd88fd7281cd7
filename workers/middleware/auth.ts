import type { MiddlewareHandler } from "hono";
import { type Role, verifyToken } from "../../lib/auth";
import { config } from "../../lib/config";
import { ApiError } from "../../lib/problem";
import type { AppEnv } from "../types";

/** The challenge every 401 carries (RFC 7235 §3.1; docs/api.md). */
const CHALLENGE = { "WWW-Authenticate": "Bearer" };
// The scheme is case-insensitive (RFC 7235 section 2.1).
const BEARER = /^Bearer\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)\s*$/i;

/**
 * Requires a valid bearer token whose role is one of `roles` (any role when empty). Sets `principal`.
 * Missing, malformed, forged or expired tokens → 401 `unauthorized`; a valid token with another role →
 * 403 `forbidden`.
 */
export const auth = (...roles: Role[]): MiddlewareHandler<AppEnv> => {
  const allowed = new Set<Role>(roles);
  return async function auth(c, next) {
    const header = c.req.header("Authorization");
    if (!header) throw new ApiError("unauthorized", "Send Authorization: Bearer <token>.", { headers: CHALLENGE });
    const match = BEARER.exec(header);
    if (!match?.[1]) throw new ApiError("unauthorized", "The Authorization header is not a bearer token.", { headers: CHALLENGE });
    const cfg = config(c.env);
    const principal = await verifyToken(match[1], {
      secret: c.env.JWT_SECRET,
      jwksUrl: cfg.JWKS_URL,
      maxLifetimeSeconds: cfg.MAX_TOKEN_LIFETIME_SECONDS,
    }).catch((err: unknown) => {
      // RFC 7235 §3.1: every 401 names the scheme, forged and expired tokens included.
      if (err instanceof ApiError && err.code === "unauthorized") throw new ApiError("unauthorized", err.message, { headers: CHALLENGE });
      throw err;
    });
    if (allowed.size > 0 && !allowed.has(principal.role))
      throw new ApiError("forbidden", `This route needs the role ${[...allowed].join(" or ")}.`);
    c.set("principal", principal);
    await next();
  };
};

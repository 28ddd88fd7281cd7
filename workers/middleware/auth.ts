import type { MiddlewareHandler } from "hono";
import { type Role, verifyToken } from "../../lib/auth";
import { ApiError } from "../../lib/problem";
import type { AppEnv } from "../types";

const BEARER = /^Bearer\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)\s*$/;

/**
 * Requires a valid bearer token whose role is one of `roles` (any role when empty). Sets `principal`.
 * Missing, malformed, forged or expired tokens → 401 `unauthorized`; a valid token with another role →
 * 403 `forbidden`.
 */
export const auth = (...roles: Role[]): MiddlewareHandler<AppEnv> => {
  const allowed = new Set<Role>(roles);
  return async function auth(c, next) {
    const header = c.req.header("Authorization");
    if (!header) throw new ApiError("unauthorized", "Send Authorization: Bearer <token>.", { headers: { "WWW-Authenticate": "Bearer" } });
    const match = BEARER.exec(header);
    if (!match?.[1])
      throw new ApiError("unauthorized", "The Authorization header is not a bearer token.", { headers: { "WWW-Authenticate": "Bearer" } });
    const principal = await verifyToken(match[1], { secret: c.env.JWT_SECRET, jwksUrl: c.env.JWKS_URL || undefined });
    if (allowed.size > 0 && !allowed.has(principal.role))
      throw new ApiError("forbidden", `This route needs the role ${[...allowed].join(" or ")}.`);
    c.set("principal", principal);
    await next();
  };
};

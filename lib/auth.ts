import { sign, verify, verifyWithJwks } from "hono/utils/jwt/jwt";
import { z } from "zod";
import { hmacKey } from "./hmac";
import { type JwksCache, JwksUnavailableError, sharedJwksCache } from "./jwks";
import { ApiError } from "./problem";

/** Roles of API.md. */
export const ROLES = ["buyer", "organizer", "admin"] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling, from a verified token. */
export interface Principal {
  sub: string;
  role: Role;
}

/** The claims Breakwater needs; anything else in the token is ignored. */
const claimsSchema = z.object({
  sub: z.string().min(1).max(128),
  role: z.enum(ROLES),
  exp: z.number().int(),
});

/** What verification needs: the HS256 secret and, optionally, a JWKS endpoint for asymmetric tokens. */
export interface AuthConfig {
  secret: string;
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  /** Longest remaining lifetime (`exp` - now) a token may have, in seconds; default {@link MAX_TOKEN_LIFETIME_SECONDS}. */
  maxLifetimeSeconds?: number;
  /** The key-set cache for `jwksUrl` (default: the isolate's). */
  jwks?: JwksCache;
}

/** Default of `MAX_TOKEN_LIFETIME_SECONDS`: one day. A stolen token must not stay good for years. */
export const MAX_TOKEN_LIFETIME_SECONDS = 86_400;

/**
 * A small memory of tokens already verified in this isolate, so a buyer polling or retrying does not pay
 * for a signature check on every request. Entries live until the token's `exp` and never longer than
 * {@link VERIFIED_TTL_MS}; the map is bounded.
 */
const verified = new Map<string, { principal: Principal; until: number }>();
const VERIFIED_TTL_MS = 60_000;
const VERIFIED_MAX = 10_000;

/**
 * Verifies a bearer token and returns the principal. HS256 tokens are checked against the secret; when a
 * JWKS URL is configured, RS256/ES256/EdDSA tokens are checked against it. Throws 401 `unauthorized`.
 */
export async function verifyToken(token: string, config: AuthConfig): Promise<Principal> {
  const now = Date.now();
  const hit = verified.get(token);
  if (hit && hit.until > now) return hit.principal;

  let payload: unknown;
  try {
    const header = JSON.parse(atob(token.split(".")[0]?.replace(/-/g, "+").replace(/_/g, "/") ?? "")) as { alg?: unknown; kid?: unknown };
    const verification = { iss: config.issuer || undefined, aud: config.audience || undefined };
    if (header.alg === "HS256") {
      if (!config.secret) throw new Error("no HS256 secret configured");
      payload = await verify(token, await hmacKey(config.secret), { alg: "HS256", ...verification });
    } else if (config.jwksUrl) {
      if (typeof header.kid !== "string") throw new Error("token has no kid");
      const keys = await (config.jwks ?? sharedJwksCache).keys(config.jwksUrl, header.kid);
      payload = await verifyWithJwks(token, { keys, allowedAlgorithms: ["RS256", "ES256", "EdDSA"], verification });
    } else {
      throw new Error("unsupported token algorithm");
    }
  } catch (err) {
    if (err instanceof JwksUnavailableError)
      throw new ApiError("overloaded", "The identity provider's keys cannot be fetched right now; retry shortly.", {
        retryAfterSeconds: 30,
      });
    const expired = err instanceof Error && /expired/i.test(err.name + err.message);
    throw new ApiError("unauthorized", expired ? "The token has expired." : "The token is not valid.");
  }
  const claims = claimsSchema.safeParse(payload);
  if (!claims.success) throw new ApiError("unauthorized", "The token lacks a valid sub, role or exp claim.");
  const maxLifetime = config.maxLifetimeSeconds ?? MAX_TOKEN_LIFETIME_SECONDS;
  if (claims.data.exp * 1000 - now > maxLifetime * 1000)
    throw new ApiError("unauthorized", `The token's lifetime exceeds the maximum of ${maxLifetime} seconds.`);
  const principal: Principal = { sub: claims.data.sub, role: claims.data.role };
  if (verified.size >= VERIFIED_MAX) verified.clear();
  verified.set(token, { principal, until: Math.min(claims.data.exp * 1000, now + VERIFIED_TTL_MS) });
  return principal;
}

/** Issues an HS256 token (dev-token route, tests, benchmarks). */
export async function issueToken(principal: Principal, secret: string, ttlSeconds = 3600): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return sign({ sub: principal.sub, role: principal.role, iat: now, exp: now + ttlSeconds }, await hmacKey(secret), "HS256");
}

import { env } from "cloudflare:workers";
import { sign } from "hono/utils/jwt/jwt";
import { afterEach, describe, expect, it, vi } from "vitest";
import { issueToken, MAX_TOKEN_LIFETIME_SECONDS, verifyToken } from "../../lib/auth";
import { type Jwk, jwksCache } from "../../lib/jwks";
import { ApiError } from "../../lib/problem";
import { call, type Problem } from "../helpers";

const secret = env.JWT_SECRET;
const nowSeconds = () => Math.floor(Date.now() / 1000);

async function errorOf(p: Promise<unknown>): Promise<ApiError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  if (!(e instanceof ApiError)) throw new Error(`expected an ApiError, got ${String(e)}`);
  return e;
}

/** An ES256 signing key with its public JWK under `kid`. */
async function keyPair(kid: string): Promise<{ privateJwk: Jwk & { alg: "ES256"; kid: string }; publicJwk: Jwk }> {
  const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const privateJwk = { ...((await crypto.subtle.exportKey("jwk", pair.privateKey)) as JsonWebKey), alg: "ES256" as const, kid };
  const publicJwk = { ...((await crypto.subtle.exportKey("jwk", pair.publicKey)) as JsonWebKey), alg: "ES256", kid };
  return { privateJwk, publicJwk };
}

const claims = (sub: string, ttl = 600) => ({ sub, role: "buyer", exp: nowSeconds() + ttl });

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe("Authorization header", () => {
  it("accepts the bearer scheme in any case (RFC 7235)", async () => {
    const token = await issueToken({ sub: "ops-1", role: "admin" }, secret);
    for (const scheme of ["bearer", "BEARER", "Bearer", "bEaReR"]) {
      const res = await call("/metrics", { headers: { Authorization: `${scheme} ${token}` } });
      expect(res.status, scheme).toBe(200);
    }
  });

  it("refuses a token whose exp lies beyond the maximum lifetime, with 401 unauthorized", async () => {
    const farFuture = await sign({ sub: "ops-2", role: "admin", exp: nowSeconds() + 10 * 365 * 86_400 }, secret, "HS256");
    const res = await call("/metrics", { headers: { Authorization: `Bearer ${farFuture}` } });
    expect(res.status).toBe(401);
    const problem = (await res.json()) as Problem;
    expect(problem.code).toBe("unauthorized");
    expect(problem.detail).toContain(`${MAX_TOKEN_LIFETIME_SECONDS} seconds`);
    // Within the configured maximum (MAX_TOKEN_LIFETIME_SECONDS in wrangler.toml) the same claims pass.
    const ok = await sign({ sub: "ops-2", role: "admin", exp: nowSeconds() + MAX_TOKEN_LIFETIME_SECONDS - 60 }, secret, "HS256");
    expect((await call("/metrics", { headers: { Authorization: `Bearer ${ok}` } })).status).toBe(200);
  });

  it("takes the maximum lifetime from the configuration", async () => {
    const token = await sign({ sub: "u-life", role: "buyer", exp: nowSeconds() + 3_600 }, secret, "HS256");
    expect((await errorOf(verifyToken(token, { secret, maxLifetimeSeconds: 600 }))).code).toBe("unauthorized");
    await expect(verifyToken(token, { secret, maxLifetimeSeconds: 7_200 })).resolves.toEqual({ sub: "u-life", role: "buyer" });
  });
});

describe("verified-token cache", () => {
  it("never serves a cached token after its exp", async () => {
    const start = Date.now();
    vi.useFakeTimers({ toFake: ["Date"], now: start });
    const token = await sign({ sub: "u-exp", role: "buyer", exp: Math.floor(start / 1000) + 5 }, secret, "HS256");
    await expect(verifyToken(token, { secret })).resolves.toEqual({ sub: "u-exp", role: "buyer" });
    // 10 s later the token has expired, though the cache would keep an entry for up to a minute.
    vi.setSystemTime(start + 10_000);
    const err = await errorOf(verifyToken(token, { secret }));
    expect(err.code).toBe("unauthorized");
    expect(err.message).toMatch(/expired/);
  });
});

describe("JWKS key set", () => {
  /** A stand-in for the identity provider's JWKS endpoint: serves `keys` and counts fetches. */
  function provider(keys: Jwk[]) {
    const state = { keys, fetches: 0, down: false };
    const fetch = async (_url: string) => {
      state.fetches++;
      if (state.down) return new Response("unavailable", { status: 503 });
      return Response.json({ keys: state.keys });
    };
    return { state, fetch };
  }

  it("fetches the set once per isolate for many tokens, not once per token (default cache)", async () => {
    const { privateJwk, publicJwk } = await keyPair("k-default");
    const url = `https://idp.example/${crypto.randomUUID()}/jwks.json`;
    let fetches = 0;
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input) => {
      expect(String(input instanceof Request ? input.url : input)).toBe(url);
      fetches++;
      return Response.json({ keys: [publicJwk] });
    });
    for (let i = 0; i < 20; i++) {
      const token = await sign(claims(`u-${i}`), privateJwk);
      await expect(verifyToken(token, { secret, jwksUrl: url })).resolves.toEqual({ sub: `u-${i}`, role: "buyer" });
    }
    // 20 forged tokens (unknown kids) right after: the set was fetched less than an interval ago, so no refetch.
    const forger = await keyPair("k-forged");
    for (let i = 0; i < 20; i++) {
      const forged = await sign(claims(`f-${i}`), { ...forger.privateJwk, kid: `forged-${i}` });
      expect((await errorOf(verifyToken(forged, { secret, jwksUrl: url }))).code).toBe("unauthorized");
    }
    expect(fetches).toBe(1);
  });

  it("refetches for an unknown kid at most once per interval, and picks up a rotated key", async () => {
    let t = 1_000_000;
    const old = await keyPair("k-old");
    const next = await keyPair("k-new");
    const idp = provider([old.publicJwk]);
    const jwks = jwksCache({ fetch: idp.fetch, now: () => t, ttlMs: 600_000, refetchIntervalMs: 30_000 });
    const url = "https://idp.example/jwks.json";
    const verifyWith = (token: string) => verifyToken(token, { secret, jwksUrl: url, jwks });

    await expect(verifyWith(await sign(claims("a"), old.privateJwk))).resolves.toMatchObject({ sub: "a" });
    expect(idp.state.fetches).toBe(1);
    // The provider rotates; the first token with the new kid refetches once, later ones in the interval do not.
    idp.state.keys = [old.publicJwk, next.publicJwk];
    t += 31_000;
    await expect(verifyWith(await sign(claims("b"), next.privateJwk))).resolves.toMatchObject({ sub: "b" });
    expect(idp.state.fetches).toBe(2);
    for (let i = 0; i < 10; i++) {
      const forged = await sign(claims(`x${i}`), { ...old.privateJwk, kid: `unknown-${i}` });
      expect((await errorOf(verifyWith(forged))).code).toBe("unauthorized");
      t += 1_000;
    }
    expect(idp.state.fetches).toBe(2);
    // Past the interval, an unknown kid may ask once more.
    t += 30_000;
    expect((await errorOf(verifyWith(await sign(claims("y"), { ...old.privateJwk, kid: "unknown-y" })))).code).toBe("unauthorized");
    expect(idp.state.fetches).toBe(3);
  });

  it("shares one fetch between concurrent misses and refreshes after the TTL", async () => {
    let t = 0;
    const k = await keyPair("k-ttl");
    const idp = provider([k.publicJwk]);
    const jwks = jwksCache({ fetch: idp.fetch, now: () => t, ttlMs: 60_000, refetchIntervalMs: 10_000 });
    const url = "https://idp.example/ttl.json";
    const tokens = await Promise.all(Array.from({ length: 10 }, (_, i) => sign(claims(`c${i}`), k.privateJwk)));
    await Promise.all(
      tokens.map((tok) => expect(verifyToken(tok, { secret, jwksUrl: url, jwks })).resolves.toMatchObject({ role: "buyer" })),
    );
    expect(idp.state.fetches).toBe(1);
    t += 59_000;
    await verifyToken(await sign(claims("d"), k.privateJwk), { secret, jwksUrl: url, jwks });
    expect(idp.state.fetches).toBe(1);
    t += 2_000;
    await verifyToken(await sign(claims("e"), k.privateJwk), { secret, jwksUrl: url, jwks });
    expect(idp.state.fetches).toBe(2);
  });

  it("surfaces an unreachable provider as 503 overloaded, asks it at most once per interval, and keeps a known set through an outage", async () => {
    let t = 0;
    const k = await keyPair("k-out");
    const idp = provider([k.publicJwk]);
    idp.state.down = true;
    const jwks = jwksCache({ fetch: idp.fetch, now: () => t, ttlMs: 60_000, refetchIntervalMs: 10_000 });
    const url = "https://idp.example/out.json";
    for (let i = 0; i < 5; i++) {
      const err = await errorOf(verifyToken(await sign(claims(`o${i}`), k.privateJwk), { secret, jwksUrl: url, jwks }));
      expect(err.code).toBe("overloaded");
      expect(err.retryAfterSeconds).toBeGreaterThan(0);
    }
    expect(idp.state.fetches).toBe(1);
    idp.state.down = false;
    t += 10_000;
    await expect(verifyToken(await sign(claims("p"), k.privateJwk), { secret, jwksUrl: url, jwks })).resolves.toMatchObject({ sub: "p" });
    expect(idp.state.fetches).toBe(2);
    // Past the TTL with the provider down again: the last good set still verifies.
    idp.state.down = true;
    t += 61_000;
    await expect(verifyToken(await sign(claims("q"), k.privateJwk), { secret, jwksUrl: url, jwks })).resolves.toMatchObject({ sub: "q" });
    expect(idp.state.fetches).toBe(3);
  });
});

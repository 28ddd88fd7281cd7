import { cachedHmacKey, hmacKey } from "./hmac";

/**
 * Compact signed tokens (HMAC-SHA-256) for everything the platform signs: waiting-room tickets and
 * passes, ticket QR codes, replayable ids. A token is `base64url(payload JSON).base64url(mac)`; each use
 * has its own `purpose`, mixed into the key, so a token made for one purpose never verifies as another.
 */

const enc = new TextEncoder();
const dec = new TextDecoder();

/** base64url without padding. */
export function b64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Inverse of {@link b64url}; throws on malformed input. */
export function fromB64url(s: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new Error("not base64url");
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The HMAC key for one purpose, derived from the platform secret (cached per isolate). */
function purposeKey(secret: string, purpose: string): Promise<CryptoKey> {
  return cachedHmacKey(`${purpose}\u0000${secret}`, async () =>
    crypto.subtle.sign("HMAC", await hmacKey(secret), enc.encode(`breakwater:${purpose}`)),
  );
}

/** Signs a JSON payload for `purpose`. */
export async function signPayload(secret: string, purpose: string, payload: unknown): Promise<string> {
  const body = b64url(enc.encode(JSON.stringify(payload)));
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await purposeKey(secret, purpose), enc.encode(body)));
  return `${body}.${b64url(mac)}`;
}

/**
 * Verifies a token made by {@link signPayload} for `purpose` and returns its payload (unvalidated: parse it
 * with a schema), or null when it is malformed, forged, or for another purpose. Constant-time compare is
 * done by `crypto.subtle.verify`.
 */
export async function verifyPayload(secret: string, purpose: string, token: string): Promise<unknown | null> {
  if (token.length > 4096) return null;
  const dot = token.indexOf(".");
  if (dot <= 0 || dot !== token.lastIndexOf(".")) return null;
  const body = token.slice(0, dot);
  try {
    const mac = fromB64url(token.slice(dot + 1));
    const ok = await crypto.subtle.verify("HMAC", await purposeKey(secret, purpose), mac, enc.encode(body));
    if (!ok) return null;
    return JSON.parse(dec.decode(fromB64url(body))) as unknown;
  } catch {
    return null;
  }
}

/** Hex SHA-256 of a string (idempotency fingerprints, stable hashing). */
export async function sha256Hex(s: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(s)));
  let out = "";
  for (const b of d) out += b.toString(16).padStart(2, "0");
  return out;
}

/**
 * A stable 32-bit hash of a string, for choosing shards and buckets (`hash32(x) % n`): FNV-1a followed by
 * murmur3's finalizer. FNV-1a alone leaves its low bits depending on the low bits of the characters, so
 * sequential ids (`buyer-1`, `buyer-2`, …) crowd into a few buckets; the finalizer gives full avalanche.
 * Same input, same answer, everywhere.
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * HMAC-SHA-256 keys, imported once per isolate and kept (bounded): the one key cache of the project (JWT
 * HS256, signed tokens, webhook signatures).
 */

const enc = new TextEncoder();
const keys = new Map<string, Promise<CryptoKey>>();
/** Most keys kept; the oldest is dropped first (organizer webhook secrets are many). */
const MAX_KEYS = 256;

/** The cached key `id`, imported from `material()` on first use. */
export function cachedHmacKey(id: string, material: () => Promise<BufferSource> | BufferSource): Promise<CryptoKey> {
  let key = keys.get(id);
  if (!key) {
    key = (async () => crypto.subtle.importKey("raw", await material(), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]))();
    // A failed import is not kept: the next call tries again.
    key.catch(() => keys.delete(id));
    if (keys.size >= MAX_KEYS) {
      const oldest = keys.keys().next();
      if (!oldest.done) keys.delete(oldest.value);
    }
    keys.set(id, key);
  }
  return key;
}

/** The key of a secret string. */
export const hmacKey = (secret: string): Promise<CryptoKey> => cachedHmacKey(`raw\u0000${secret}`, () => enc.encode(secret));

/** HMAC-SHA-256 of `data` under `secret`. */
export async function hmacSha256(secret: string, data: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(secret), enc.encode(data)));
}

/**
 * Opaque identifiers. Clients never build them; the server may encode routing in them
 * (a hold id names the Inventory Durable Object that owns it), so every parse is validated.
 */

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower case

/** `n` random base32 characters (5 bits each, from crypto.getRandomValues). */
export function randomToken(n = 20): string {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  let out = "";
  for (const b of bytes) out += ALPHABET[b & 31];
  return out;
}

/** A new id with a type prefix, e.g. `evt_…`. */
export const newId = (prefix: string, n = 20): string => `${prefix}_${randomToken(n)}`;

/** Ids the server issues: prefix, underscore, base32 body. */
const idPattern = (prefix: string): RegExp => new RegExp(`^${prefix}_[0-9a-hjkmnp-tv-z]{8,40}$`);

/** Event ids. */
export const EVENT_ID = idPattern("evt");

/** Section ids are chosen by the organizer: short, URL-safe. */
export const SECTION_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;

/**
 * Typed views of the string vars in wrangler.toml. Each reader has one documented default, so a missing
 * var behaves the same everywhere.
 */

/** Integer var with a default and bounds; a malformed value falls back to the default. */
export function intVar(value: string | undefined, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = value === undefined || value === "" ? Number.NaN : Number(value);
  if (!Number.isInteger(n)) return fallback;
  return Math.min(max, Math.max(min, n));
}

/** "true"/"1"/"yes" are on; everything else is off. */
export const boolVar = (value: string | undefined): boolean => value !== undefined && /^(true|1|yes|on)$/i.test(value.trim());

/** Comma-separated list, trimmed, empties removed. */
export const listVar = (value: string | undefined): string[] =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** Default hold lifetime in seconds when an event does not set `holdSeconds`. */
export const DEFAULT_HOLD_SECONDS = 600;

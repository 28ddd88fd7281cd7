/** Splits `rows` into chunks of `size`. */
export function chunk<T>(rows: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < rows.length; i += size) out.push(rows.slice(i, i + size));
  return out;
}

/** Groups `rows` by `key`, in first-seen order of the keys and of the rows within each group. */
export function groupBy<T, K>(rows: Iterable<T>, key: (row: T) => K): Map<K, T[]> {
  const out = new Map<K, T[]>();
  for (const row of rows) {
    const k = key(row);
    const group = out.get(k);
    if (group) group.push(row);
    else out.set(k, [row]);
  }
  return out;
}

/**
 * Splits `rows` into chunks of at most `most` rows whose `weight`s add up to at most `budget` (a row
 * heavier than the budget goes alone): e.g. queue `sendBatch` calls, limited in messages and bytes.
 */
export function chunkByWeight<T>(rows: readonly T[], most: number, budget: number, weight: (row: T) => number): T[][] {
  const out: T[][] = [];
  let part: T[] = [];
  let sum = 0;
  for (const row of rows) {
    const w = weight(row);
    if (part.length && (part.length >= most || sum + w > budget)) {
      out.push(part);
      part = [];
      sum = 0;
    }
    part.push(row);
    sum += w;
  }
  if (part.length) out.push(part);
  return out;
}

/**
 * Runs `fn` on every item, at most `limit` at a time, starting them in order; resolves when all have
 * finished. `fn` handles its own failures: a rejection rejects the whole run.
 */
export async function forEachConcurrent<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

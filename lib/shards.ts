import { hash32 } from "./signing";

/** The rendezvous weight of `shard` for `userId` (hash32 is fully mixed: see lib/signing.ts). */
const weight = (shard: string, userId: string): number => hash32(`${shard}\u0000${userId}`);

/**
 * The order shard that owns a buyer: rendezvous (highest-random-weight) hashing of the user id over the
 * shard list. Stable (same list, same answer, in every isolate; the order of the list does not matter),
 * and appending a shard moves only the buyers the new shard wins (about 1/(n+1)), so "my orders" stays a
 * one-shard query.
 */
export function shardFor(userId: string, shards: readonly string[]): string {
  if (!shards.length) throw new Error("no order shards configured");
  let best = shards[0] as string;
  let bestScore = -1;
  for (const shard of shards) {
    const score = weight(shard, userId);
    if (score > bestScore || (score === bestScore && shard < best)) {
      best = shard;
      bestScore = score;
    }
  }
  return best;
}

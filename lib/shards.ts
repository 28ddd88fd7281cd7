import { hash32 } from "./signing";

/**
 * murmur3's 32-bit finalizer: a bijection with full avalanche. FNV-1a alone is a poor rendezvous weight:
 * the two strings it compares differ only in the shard name, and for ids that share a prefix
 * (`buyer-1`, `buyer-2`, …) the comparison of their FNV states barely changes with the suffix, so whole
 * cohorts of ids landed on one shard. Mixing each weight decorrelates them.
 */
function fmix32(h: number): number {
  let x = h;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The rendezvous weight of `shard` for `userId`. */
const weight = (shard: string, userId: string): number => fmix32(hash32(`${shard}\u0000${userId}`));

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

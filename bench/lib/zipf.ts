/**
 * A Zipf(s) sampler over N keys: rank k (1-based) is drawn with probability k^-s / H(N, s). With s ≈ 1
 * a few keys take most of the traffic and a long tail is touched now and then, which is how interest in
 * events spreads during an on-sale. Sampling is a binary search in a precomputed CDF (O(log N)), driven by
 * a seeded PRNG so a run can be repeated exactly.
 */

/** A seeded uniform generator in [0, 1) (mulberry32: small, fast, good enough for load shapes). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Options of {@link zipf}. */
export interface ZipfOptions {
  /** Number of keys (ranks 0 … n − 1). */
  n: number;
  /** Exponent; 1.0–1.1 is typical of popularity (default 1.05). */
  s?: number;
  /** PRNG seed (default 1). */
  seed?: number;
}

/** A Zipf sampler. */
export interface Zipf {
  /** Number of keys. */
  readonly n: number;
  /** Exponent. */
  readonly s: number;
  /** The next rank, 0-based: 0 is the most popular key. */
  next(): number;
  /** Probability of the 0-based rank `k`. */
  probability(k: number): number;
  /** Share of all draws that go to the `top` most popular keys. */
  topShare(top: number): number;
}

/** Builds a Zipf(s) sampler over `n` keys. */
export function zipf(opts: ZipfOptions): Zipf {
  const n = Math.floor(opts.n);
  const s = opts.s ?? 1.05;
  if (!(n >= 1)) throw new Error("zipf: n must be at least 1");
  if (!(s >= 0)) throw new Error("zipf: s must be non-negative");
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += (k + 1) ** -s;
    cdf[k] = sum;
  }
  for (let k = 0; k < n; k++) cdf[k] = (cdf[k] ?? 0) / sum;
  cdf[n - 1] = 1;
  const random = mulberry32(opts.seed ?? 1);
  return {
    n,
    s,
    next() {
      const u = random();
      let lo = 0;
      let hi = n - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((cdf[mid] ?? 1) > u) hi = mid;
        else lo = mid + 1;
      }
      return lo;
    },
    probability: (k) => (k < 0 || k >= n ? 0 : (k + 1) ** -s / sum),
    topShare: (top) => (top <= 0 ? 0 : (cdf[Math.min(n, Math.floor(top)) - 1] ?? 0)),
  };
}

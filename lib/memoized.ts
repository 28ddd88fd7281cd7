/** Where a memoized function keeps what it built. */
interface Store<K, V> {
  get(key: K): V | undefined;
  set(key: K, value: V): unknown;
}

function memoizedIn<K, V>(built: Store<K, V>, build: (key: K) => V): (key: K) => V {
  return (key) => {
    let v = built.get(key);
    if (v === undefined) {
      v = build(key);
      built.set(key, v);
    }
    return v;
  };
}

/**
 * `build` memoized per key: values derived from a few fixed inputs (strings, resolved metric series) are
 * built once, not per request. Keys must come from closed sets (route patterns, status codes, cache
 * layers), never from user input, so the map stays bounded.
 */
export const memoized = <K, V>(build: (key: K) => V): ((key: K) => V) => memoizedIn(new Map<K, V>(), build);

/**
 * `build` memoized per object, held weakly: what is derived from a cached value (its answer's headers, say)
 * lives and dies with that value.
 */
export const memoizedPerObject = <K extends object, V>(build: (key: K) => V): ((key: K) => V) => memoizedIn(new WeakMap<K, V>(), build);

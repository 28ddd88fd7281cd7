/**
 * `build` memoized per key: values derived from a few fixed inputs (strings, resolved metric series) are
 * built once, not per request. Keys must come from closed sets (route patterns, status codes, cache
 * layers), never from user input, so the map stays bounded.
 */
export function memoized<K, V>(build: (key: K) => V): (key: K) => V {
  const built = new Map<K, V>();
  return (key) => {
    let v = built.get(key);
    if (v === undefined) {
      v = build(key);
      built.set(key, v);
    }
    return v;
  };
}

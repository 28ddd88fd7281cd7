/** The catalog read mix of bench/catalog: which URLs are read, in which order, and the warm-up every server gets. */
import { runLoad } from "./loadgen.ts";
import { zipf } from "./zipf.ts";

/** Events from the most to the least popular: a seeded shuffle, so popularity is not the creation order. */
export function byPopularity(ids: string[]): string[] {
  const order = ids.slice();
  let seed = 7;
  for (let i = order.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j] as string, order[i] as string];
  }
  return order;
}

/**
 * The request mix: `listShare` of `GET /v1/events`, the rest `GET /v1/events/:id` with Zipf(`zipfS`)-ranked ids.
 * Whether request `i` reads the list depends on `i` alone (one in every 1/`listShare` indices), so each run
 * of a search gets the share, however many runs used the same function before: every `runLoad` numbers its
 * requests from 0, so state kept between calls would give later, shorter runs no list reads at all.
 */
export function catalogUrls(
  base: string,
  ids: string[],
  { zipfS, listShare }: { zipfS: number; listShare: number },
): (i: number) => string {
  const sampler = zipf({ n: ids.length, s: zipfS, seed: 42 });
  const order = byPopularity(ids);
  const list = `${base}/v1/events`;
  const byRank = order.map((id) => `${base}/v1/events/${id}`);
  return (i) => (isListRead(i, listShare) ? list : (byRank[sampler.next()] as string));
}

/** Whether request `i` of the mix reads the list: when `i · listShare` passes a whole number. */
export const isListRead = (i: number, listShare: number): boolean => Math.floor((i + 1) * listShare) > Math.floor(i * listShare);

/** Every path of the mix once: the list, then each event. */
const catalogPaths = (ids: string[]): string[] => ["/v1/events", ...ids.map((id) => `/v1/events/${id}`)];

/**
 * The same warm-up for every server before it is measured: each path of the mix once (50 at a time), then
 * 2 s of the mix at min(`start`, 2,000) req/s. Breakwater's caches and every server's JIT are warm, and
 * each isolate has served the same traffic before its first step: V8 sizes an isolate's young generation
 * by what it has seen so far, and the collections' pauses grow with it, so servers with different
 * histories would not be compared on the same terms.
 */
export async function warmUp(
  base: string,
  ids: string[],
  url: (i: number) => string,
  opts: { start: number; connections?: number },
): Promise<void> {
  const paths = catalogPaths(ids);
  for (let i = 0; i < paths.length; i += 50)
    await Promise.all(
      paths.slice(i, i + 50).map(async (p) => {
        await (await fetch(`${base}${p}`)).text();
      }),
    );
  await runLoad({ url, rate: Math.min(opts.start, 2_000), durationSec: 2, ...(opts.connections ? { connections: opts.connections } : {}) });
}

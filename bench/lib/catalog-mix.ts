/**
 * The catalog read mix of the catalog benches (bench/catalog.ts, bench/catalog-instructions.ts) and the
 * answers the answer floor replays: which URLs are read, in which order, and how Breakwater's answer to
 * each is captured and compared.
 */
import { writeFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import path from "node:path";
import type { CapturedAnswer, PerRequestHeader } from "../answer-floor/worker.ts";
import { HELLO_BODY, HELLO_CONTENT_TYPE } from "../hello-world/answer.ts";
import type { BreakwaterProcess } from "./breakwater-process.ts";
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
 * requests from 0. (Until 2026-12-03 the next list index was kept between calls, so after the first run of
 * a server, the runs with fewer requests than it read no list at all: bench/README.md.)
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
export const catalogPaths = (ids: string[]): string[] => ["/v1/events", ...ids.map((id) => `/v1/events/${id}`)];

/** Headers whose value is new on every request: the answer floor makes its own. */
const PER_REQUEST_HEADERS: readonly PerRequestHeader[] = ["x-request-id", "traceparent"];

/** Headers the answer floor does not replay: per request (it makes its own ids) or per connection. */
const NOT_REPLAYED = new Set<string>(["date", "content-length", "connection", "keep-alive", "transfer-encoding", ...PER_REQUEST_HEADERS]);

/** The per-request headers an answer carries. */
const perRequestOf = (headers: IncomingHttpHeaders) => PER_REQUEST_HEADERS.filter((name) => headers[name] !== undefined);

const replayed = (headers: IncomingHttpHeaders): [string, string][] =>
  Object.entries(headers).flatMap(([name, value]) =>
    NOT_REPLAYED.has(name) || value === undefined ? [] : (Array.isArray(value) ? value : [value]).map((v): [string, string] => [name, v]),
  );

/** A header list in a comparable form (order and repeats aside). */
const headerSet = (h: [string, string][]): string => JSON.stringify(h.map(([k, v]) => `${k}: ${v}`).sort());

/** Captured answers, and the file the answer floor reads them from. */
export interface Captured {
  answers: Record<string, CapturedAnswer>;
  file: string;
}

/**
 * Breakwater's answer to every URL of the mix (the list and each event), as the answer floor will give
 * them; written once to `<workDir>/answers.json`.
 */
export async function captureAnswers(bw: BreakwaterProcess, ids: string[], workDir: string): Promise<Captured> {
  const answers: Record<string, CapturedAnswer> = {};
  const paths = catalogPaths(ids);
  for (let i = 0; i < paths.length; i += 50)
    await Promise.all(
      paths.slice(i, i + 50).map(async (p) => {
        const r = await bw.request("GET", p);
        answers[p] = { status: r.status, headers: replayed(r.headers), perRequest: perRequestOf(r.headers), body: r.body };
      }),
    );
  const file = path.join(workDir, "answers.json");
  writeFileSync(file, JSON.stringify(answers));
  return { answers, file };
}

/** Parts of Breakwater's answer that `FLOOR_DROP` can leave out of the answer floor's, to price each one. */
export const FLOOR_PARTS = ["request-id", "headers", "body"] as const;
export type FloorPart = (typeof FLOOR_PARTS)[number];

/** hello-world's one header, what dropped headers are replaced with (its body replaces a dropped body). */
const HELLO_HEADERS: [string, string][] = [["content-type", HELLO_CONTENT_TYPE]];

/**
 * The captured answers without the `drop`ped parts, written beside them to `answers-without-<parts>.json`:
 * `request-id`, no per-request header (so no `Headers` wrapper per answer in the floor); `headers`, only
 * hello-world's `Content-Type` of the shared ones; `body`, hello-world's body. A diagnosis, not the floor:
 * what is left is no longer the answer API.md owes.
 */
export function withoutParts({ answers, file }: Captured, drop: readonly FloorPart[]): Captured {
  if (drop.length === 0) return { answers, file };
  const reduced: Record<string, CapturedAnswer> = {};
  for (const [p, a] of Object.entries(answers))
    reduced[p] = {
      status: a.status,
      headers: drop.includes("headers") ? HELLO_HEADERS : a.headers,
      perRequest: drop.includes("request-id") ? [] : a.perRequest,
      body: drop.includes("body") && a.body !== "" ? HELLO_BODY : a.body,
    };
  const out = path.join(path.dirname(file), `answers-without-${drop.join("-")}.json`);
  writeFileSync(out, JSON.stringify(reduced));
  return { answers: reduced, file: out };
}

/** Throws unless the answer floor's answer to `p` is Breakwater's captured one (per-request values aside). */
export function checkFloorAnswer(answers: Record<string, CapturedAnswer>, p: string, res: Response, body: string): void {
  const want = answers[p];
  const got = Object.fromEntries(res.headers);
  if (
    !want ||
    res.status !== want.status ||
    body !== want.body ||
    headerSet(replayed(got)) !== headerSet(want.headers) ||
    perRequestOf(got).join() !== want.perRequest.join()
  )
    throw new Error(`answer floor answered ${p} unlike Breakwater`);
}

/**
 * The same warm-up for every server before it is measured: each path of the mix once (50 at a time), then
 * 2 s of the mix at min(`start`, 2,000) req/s. Breakwater's caches and every server's JIT are warm, and
 * each isolate has served the same traffic before its first step: V8 sizes an isolate's young generation
 * by what it has seen so far, and the collections' pauses grow with it (bench/README.md). `check` sees
 * every first answer (the answer floor's are compared with Breakwater's).
 */
export async function warmUp(
  base: string,
  ids: string[],
  url: (i: number) => string,
  opts: { start: number; connections?: number; check?: (path: string, res: Response, body: string) => void },
): Promise<void> {
  const paths = catalogPaths(ids);
  for (let i = 0; i < paths.length; i += 50)
    await Promise.all(
      paths.slice(i, i + 50).map(async (p) => {
        const res = await fetch(`${base}${p}`);
        const body = await res.text();
        opts.check?.(p, res, body);
      }),
    );
  await runLoad({ url, rate: Math.min(opts.start, 2_000), durationSec: 2, ...(opts.connections ? { connections: opts.connections } : {}) });
}

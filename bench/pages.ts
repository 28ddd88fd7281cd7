/**
 * bench/pages: what a buyer page costs. (1) The JavaScript a buyer page ships: every module script its
 * HTML names and each `import` in them, fetched from the server, in bytes and gzip bytes (zlib level 6,
 * and 9). (2) The page's time to first byte from the cache while the catalog benchmark's load runs: the
 * catalog mix of bench/catalog (EVENTS events, Zipf(ZIPF_S) reads of `GET /v1/events/:id`, LIST_SHARE of
 * `GET /v1/events`) at RATE req/s, open model, and beside it PAGE_RATE req/s of event pages (`GET
 * /events/:id`, the same Zipf ranking) timed from the send to the response's headers (node:http), after a
 * warm-up that renders each page once (the page is then served from the isolate's cache of rendered pages).
 *
 * Env: RATE (1500: the catalog's sustained rate on the 2-core machines of bench/README.md), PAGE_RATE (50),
 * DURATION (s, 20), EVENTS (1000), ZIPF_S (1.05), LIST_SHARE (0.05), PORT (8795), ASSETS (on: the server as
 * `npm run serve` runs it, miniflare's asset router in front; off: the socket straight on the Worker).
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { percentile, seedEvents, startBreakwater } from "./lib/breakwater-process.ts";
import { byPopularity, catalogUrls, warmUp } from "./lib/catalog-mix.ts";
import { runLoad } from "./lib/loadgen.ts";
import { envInt, envNumber } from "./lib/options.ts";
import { runInfo, writeResults } from "./lib/results.ts";
import { zipf } from "./lib/zipf.ts";

const RATE = envInt("RATE", 1_500, 1, 50_000);
const PAGE_RATE = envInt("PAGE_RATE", 50, 1, 5_000);
const DURATION = envInt("DURATION", 20, 1, 600);
const EVENTS = envInt("EVENTS", 1_000, 1, 20_000);
const ZIPF_S = envNumber("ZIPF_S", 1.05, 0, 5);
const LIST_SHARE = envNumber("LIST_SHARE", 0.05, 0, 1);
const PORT = envInt("PORT", 8795, 1024, 65_535);
const ASSETS = process.env.ASSETS === "off" ? "off" : "on";
const root = path.resolve(import.meta.dirname, "..");

/**
 * The module scripts of an HTML page and, transitively, what they import (same-origin paths): from the
 * server, or from web/ (what the assets serve) when it runs without them.
 */
async function scriptsOf(base: string, html: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const queue = [...html.matchAll(/<script type="module" src="([^"]+)"/g)].map((m) => m[1] as string);
  while (queue.length) {
    const p = queue.shift() as string;
    if (found.has(p)) continue;
    let text: string;
    if (ASSETS === "on") {
      const res = await fetch(base + p);
      if (!res.ok) throw new Error(`GET ${p} → ${res.status}`);
      text = await res.text();
    } else text = readFileSync(path.join(root, "web", p), "utf8");
    found.set(p, text);
    for (const m of text.matchAll(/from "(\.\/[^"]+)"/g)) queue.push(new URL(m[1] as string, `http://x${p}`).pathname);
  }
  return found;
}

/** Time from sending `GET path` to its response headers (ms), over a keep-alive agent. */
function ttfb(agent: http.Agent, base: string, path: string): Promise<{ ms: number; status: number; cache: string }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const req = http.get(`${base}${path}`, { agent }, (res) => {
      const ms = performance.now() - start;
      res.resume();
      res.on("end", () => resolve({ ms, status: res.statusCode ?? 0, cache: String(res.headers["cache-control"] ?? "") }));
    });
    req.on("error", reject);
  });
}

// A loaded machine can take more than the default minute to build and start the server.
const bw = await startBreakwater(PORT, { ASSETS, CRON: "off" }, 256, 240_000);
try {
  const ids = await seedEvents(bw, EVENTS);
  const order = byPopularity(ids);
  const top = order[0] as string;

  // (1) JavaScript per buyer page.
  const pagePaths = {
    event: `/events/${top}`,
    queue: `/events/${top}/queue`,
    seats: `/events/${top}/sections/a`,
    checkout: "/checkout/hld_example",
    order: "/orders/ord_example",
  };
  const js: Record<string, { files: string[]; bytes: number; gzip6: number; gzip9: number; htmlGzip6: number }> = {};
  for (const [name, p] of Object.entries(pagePaths)) {
    const res = await fetch(bw.base + p);
    const html = await res.text();
    const scripts = await scriptsOf(bw.base, html);
    const all = [...scripts.values()];
    js[name] = {
      files: [...scripts.keys()],
      bytes: all.reduce((n, t) => n + Buffer.byteLength(t), 0),
      gzip6: all.reduce((n, t) => n + gzipSync(t, { level: 6 }).length, 0),
      gzip9: all.reduce((n, t) => n + gzipSync(t, { level: 9 }).length, 0),
      htmlGzip6: gzipSync(html, { level: 6 }).length,
    };
    console.log(
      `  ${name.padEnd(8)} ${p.padEnd(40)} JS ${js[name].bytes} B, gzip ${js[name].gzip6} B (level 9: ${js[name].gzip9} B) in ${js[name].files.join(" + ")}; HTML gzip ${js[name].htmlGzip6} B`,
    );
  }

  // (2) Event-page TTFB under the catalog load.
  const mix = catalogUrls(bw.base, ids, { zipfS: ZIPF_S, listShare: LIST_SHARE });
  await warmUp(bw.base, ids, mix, { start: RATE });
  for (let i = 0; i < order.length; i += 50)
    await Promise.all(order.slice(i, i + 50).map((id) => fetch(`${bw.base}/events/${id}`).then((r) => r.text())));
  const sampler = zipf({ n: order.length, s: ZIPF_S, seed: 7 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  const samples: number[] = [];
  const statuses: Record<string, number> = {};
  const probes: Promise<void>[] = [];
  const load = runLoad({ url: mix, rate: RATE, durationSec: DURATION, warmupSec: 1 });
  const startAt = performance.now() + 1_000;
  await new Promise((r) => setTimeout(r, 1_000));
  const every = 1_000 / PAGE_RATE;
  for (let k = 0; performance.now() - startAt < DURATION * 1_000; k++) {
    const due = startAt + k * every;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const id = order[sampler.next()] as string;
    probes.push(
      ttfb(agent, bw.base, `/events/${id}`).then(
        (r) => {
          samples.push(r.ms);
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        },
        () => {
          statuses.error = (statuses.error ?? 0) + 1;
        },
      ),
    );
  }
  const catalog = await load;
  await Promise.all(probes);
  agent.destroy();
  samples.sort((a, b) => a - b);
  const pageTtfb = {
    n: samples.length,
    p50: percentile(samples, 50),
    p90: percentile(samples, 90),
    p99: percentile(samples, 99),
    max: samples[samples.length - 1] ?? 0,
    statuses,
  };
  const fmt = (v: number) => v.toFixed(2);
  console.log(
    `  catalog mix at ${RATE} req/s: achieved ${catalog.throughput.toFixed(0)} req/s, p50 ${fmt(catalog.p50)} ms, p99 ${fmt(catalog.p99)} ms, errors ${catalog.errors.total}`,
  );
  console.log(
    `  event page TTFB at ${PAGE_RATE} req/s beside it (n=${pageTtfb.n}): p50 ${fmt(pageTtfb.p50)} ms, p90 ${fmt(pageTtfb.p90)} ms, p99 ${fmt(pageTtfb.p99)} ms, max ${fmt(pageTtfb.max)} ms, statuses ${JSON.stringify(statuses)}`,
  );
  const file = writeResults("pages", {
    run: runInfo(),
    settings: { RATE, PAGE_RATE, DURATION, EVENTS, ZIPF_S, LIST_SHARE, ASSETS },
    js,
    catalog: { throughput: catalog.throughput, p50: catalog.p50, p99: catalog.p99, errors: catalog.errors },
    pageTtfb,
  });
  console.log(`  results: ${file}`);
} finally {
  await bw.stop();
}

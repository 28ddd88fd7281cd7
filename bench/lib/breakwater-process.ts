/**
 * Runs Breakwater for a benchmark the way `npm run serve` does (workerd through miniflare with
 * unsafeDirectSockets, no dev proxy) in a child process with a fresh state directory, and talks to it over
 * a keep-alive HTTP agent. Ready means serve.ts printed its line (after migrations), not merely that the
 * socket answers. Also: seeding events through the public API, and the hello-world Worker served the same
 * way (the baseline of bench/catalog).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { CacheLayer } from "../../lib/read-cache.ts";

const root = path.resolve(import.meta.dirname, "..", "..");

/** A running server. */
export interface BreakwaterProcess {
  base: string;
  request(
    method: string,
    p: string,
    body?: unknown,
    token?: string,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>;
  token(sub: string, role: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Runs `script` (relative to the repository) under this Node with `env` added, and resolves once its
 * stdout has printed `readyLine`; fails if it exits first or takes more than `readyWithinMs` (60 s).
 * `detached`: the child leads its own process group, so `process.kill(-child.pid, "SIGKILL")` takes
 * workerd down with it (bench/drop's crash). `stderr`: a file descriptor to write the child's stderr to
 * (default: this process's).
 */
export async function spawnUntilReady(
  script: string,
  readyLine: string,
  env: Record<string, string>,
  readyWithinMs = 60_000,
  detached = false,
  stderr: "inherit" | number = "inherit",
): Promise<ChildProcess> {
  const child: ChildProcess = spawn(process.execPath, [path.join(root, script)], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", stderr],
    detached,
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start within ${readyWithinMs / 1000} s`)), readyWithinMs);
    let out = "";
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes(readyLine)) {
        clearTimeout(timer);
        // Stop collecting: with REQUEST_LOG on, every log line would be appended and searched again (quadratic CPU here).
        child.stdout?.off("data", onData);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.on("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  child.stdout?.resume();
  return child;
}

/** Starts the server on `port` with extra environment (e.g. ORDER_SHARDS, RATE_LIMITS=off). */
export async function startBreakwater(
  port: number,
  env: Record<string, string> = {},
  maxSockets = 256,
  readyWithinMs?: number,
): Promise<BreakwaterProcess> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "bw-bench-"));
  const child = await spawnUntilReady(
    "scripts/serve.ts",
    "Breakwater is serving",
    {
      PORT: String(port),
      STATE_DIR: stateDir,
      REQUEST_LOG: "off",
      RATE_LIMITS: "off",
      // The API path as on Cloudflare, where /v1/* runs the Worker first: without miniflare's local
      // emulation of the asset router in front (scripts/serve.ts ServeOptions.assets). ASSETS=on restores it.
      ASSETS: "off",
      ...env,
    },
    readyWithinMs,
  );
  const base = `http://127.0.0.1:${port}`;
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  const request = (method: string, p: string, body?: unknown, token?: string, extra: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        `${base}${p}`,
        {
          method,
          agent,
          headers: {
            ...(data ? { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) } : {}),
            ...(token ? { Authorization: `Bearer ${token}` } : {}),
            ...extra,
          },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => {
            text += c;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
        },
      );
      req.on("error", reject);
      if (data) req.write(data);
      req.end();
    });
  return {
    base,
    request,
    async token(sub, role) {
      const r = await request("POST", "/v1/auth/dev-token", { sub, role });
      if (r.status !== 200) throw new Error(`dev-token ${r.status} ${r.body}`);
      return (JSON.parse(r.body) as { token: string }).token;
    },
    async stop() {
      agent.destroy();
      // Wait for the server to exit (at most 10 s): workerd may still be writing its state (a run that
      // ends with queue retries pending), and removing the directory under it fails with ENOTEMPTY.
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      rmSync(stateDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    },
  };
}

/** Percentile of a sorted array. */
export const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

/** Sum of a Prometheus counter over the series whose labels contain every `match` pair. */
export function counter(text: string, name: string, match: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(match).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

/** The layers of `breakwater_cache_lookups_total` (the product's `CacheLayer`, lib/read-cache.ts). */
export const CACHE_LAYERS = ["micro", "validated", "coalesced", "edge", "kv", "origin"] as const satisfies readonly CacheLayer[];
export type CacheLayerName = (typeof CACHE_LAYERS)[number];
/** The layers counted as hits (the product's `HIT_LAYERS`); `kv` and `origin` are misses. */
export const CACHE_HIT_LAYERS: readonly CacheLayerName[] = ["micro", "validated", "coalesced", "edge"];

/** Breakwater's catalog reads so far by the layer that answered, from /metrics (`adminToken`: an admin dev token). */
export async function cacheLookups(
  bw: BreakwaterProcess,
  adminToken: string,
): Promise<{ lookups: Record<CacheLayerName, number>; metrics: string }> {
  const res = await bw.request("GET", "/metrics", undefined, adminToken);
  if (res.status !== 200) throw new Error(`/metrics → ${res.status}`);
  const lookups = Object.fromEntries(CACHE_LAYERS.map((l) => [l, counter(res.body, "breakwater_cache_lookups_total", { layer: l })]));
  return { lookups: lookups as Record<CacheLayerName, number>, metrics: res.body };
}

/** Seeds `n` events through the public API (organizer dev token, POST /v1/events), 16 at a time. */
export async function seedEvents(bw: BreakwaterProcess, n: number): Promise<string[]> {
  const token = await bw.token("bench-organizer", "organizer");
  const now = Date.now();
  const ids: string[] = new Array(n);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < n; i = next++) {
        const body = {
          name: `Bench show ${i}`,
          venue: `Hall ${i % 37}`,
          startsAt: new Date(now + (30 + (i % 300)) * 86_400_000).toISOString(),
          saleStartsAt: new Date(now - 60_000 + i * 1_000).toISOString(),
          currency: "EUR",
          perCustomerLimit: 4,
          sections: [
            { id: "floor", name: "Floor", kind: "ga", price: 4_500 + (i % 10) * 100, capacity: 2_000 },
            {
              id: "a",
              name: "Block A",
              kind: "seated",
              price: 8_900,
              rows: Array.from({ length: 5 }, (_, r) => ({ id: String(r + 1), seats: 20 })),
            },
          ],
        };
        const res = await bw.request("POST", "/v1/events", body, token);
        if (res.status !== 201) throw new Error(`POST /v1/events → ${res.status} ${res.body}`);
        ids[i] = (JSON.parse(res.body) as { event: { id: string } }).event.id;
      }
    }),
  );
  console.log(`  seeded ${n} events through POST /v1/events in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return ids;
}

/** The script that serves the hello-world baseline (what {@link workerdOf} looks for, with the port). */
export const HELLO_WORLD_SCRIPT = "bench/lib/serve-hello-world.ts";

/** Starts the hello-world baseline (bench/hello-world) in a child process, the way scripts/serve.ts serves Breakwater. */
export async function startHelloWorld(port: number, readyWithinMs?: number): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = await spawnUntilReady(HELLO_WORLD_SCRIPT, "hello-world is serving", { PORT: String(port) }, readyWithinMs);
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 300));
    },
  };
}

/**
 * `npm run serve` / `npm start`: the Worker on workerd through miniflare with `unsafeDirectSockets`, so
 * requests reach workerd without the development proxy (the fast path that benchmarks measure).
 *
 * Same configuration as wrangler.toml (local D1, KV, queues, Durable Objects, cron), DEV_AUTH on, state
 * in STATE_DIR (default .wrangler/state, the layout `wrangler dev` uses) so it survives a restart.
 * Migrations are applied on start, before the port opens (test/e2e/serve.test.ts). `--seed` creates the demo
 * event when it is missing.
 *
 * Env: PORT (8787), HOST (127.0.0.1), STATE_DIR, REQUEST_LOG (all | errors | off | 0..1), ASSETS=off to not
 * serve the static files (see {@link ServeOptions.assets}),
 * BUILD=0 to reuse the last bundle, INSPECTOR_PORT to open workerd's V8 inspector (CPU and heap profiles),
 * CRON=off to not run the cron trigger (read benchmarks: locally its D1 and Durable Object work shares the
 * one JavaScript thread with the requests being measured; on Cloudflare it runs in its own invocation),
 * DRAIN_SECONDS (30): on SIGTERM or SIGINT the server stops accepting connections and lets the requests in
 * flight finish, for at most this long, before it exits (a second signal exits at once).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { convertV4MiniflareOptions, Log, LogLevel, Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions, unstable_readConfig, unstable_splitSqlQuery } from "wrangler";

const root = path.resolve(import.meta.dirname, "..");
const defaultConfigPath = path.join(root, "wrangler.toml");
const defaultBundleDir = path.join(root, ".build", "worker");

/** Reads KEY=VALUE lines (.dev.vars format). */
function readVars(file: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = /^\s*([A-Z0-9_]+)\s*=\s*(.*)\s*$/.exec(line);
    if (m?.[1]) vars[m[1]] = (m[2] ?? "").replace(/^"(.*)"$/, "$1");
  }
  return vars;
}

/** The optional secrets of lib/config.ts (not in wrangler.toml's [secrets].required). */
const OPTIONAL_SECRETS = ["MAIL_API_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"];

/** Local vars: .dev.vars, else .dev.vars.example; then overrides from the environment. */
export function localVars(): Record<string, string> {
  const file = existsSync(path.join(root, ".dev.vars")) ? ".dev.vars" : ".dev.vars.example";
  const vars = readVars(path.join(root, file));
  // Any var declared in wrangler.toml [vars], and the optional secrets, may be overridden from the environment
  // (e.g. RATE_LIMITS=off; MAIL_API_KEY with MAIL_API_URL to send mail through a local stand-in of the mail API).
  const declared = [...Object.keys(unstable_readConfig({ config: defaultConfigPath }).vars ?? {}), ...OPTIONAL_SECRETS];
  for (const key of declared) {
    const v = process.env[key];
    if (v !== undefined) vars[key] = v;
  }
  return vars;
}

/** Applies unapplied migrations to one D1 database, tracked in `d1_migrations` like wrangler does. */
async function migrate(mf: Miniflare, binding: string, dir: string): Promise<string[]> {
  const db = await mf.getD1Database(binding);
  await db
    .prepare(
      "CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)",
    )
    .run();
  const applied = new Set((await db.prepare("SELECT name FROM d1_migrations").all<{ name: string }>()).results.map((r) => r.name));
  const files = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith(".sql"))
        .sort()
    : [];
  const done: string[] = [];
  for (const file of files) {
    if (applied.has(file)) continue;
    const statements = unstable_splitSqlQuery(readFileSync(path.join(dir, file), "utf8"));
    await db.batch([...statements.map((s) => db.prepare(s)), db.prepare("INSERT INTO d1_migrations (name) VALUES (?)").bind(file)]);
    done.push(`${binding}:${file}`);
  }
  return done;
}

/** Options of {@link startServer}. */
export interface ServeOptions {
  port?: number;
  host?: string;
  stateDir?: string;
  build?: boolean;
  vars?: Record<string, string>;
  /** Run the cron trigger every minute, as production does. */
  cron?: boolean;
  log?: boolean;
  /** Another Worker's wrangler config (bench/hello-world); default: the repository's wrangler.toml. */
  configPath?: string;
  /** Where that Worker's bundle is built; default: .build/worker. */
  bundleDir?: string;
  /**
   * Serve the static files of `[assets]` (default true). Locally miniflare emulates Cloudflare's asset
   * routing with two more Workers in front of every request (an RPC proxy and the asset router), which
   * cost the API about two thirds of its local throughput; on Cloudflare that routing is the platform's
   * and `/v1/*` runs the Worker first. `false` puts the socket straight on the Worker (the benchmarks of
   * the API path): pages are still rendered, static files are not served.
   */
  assets?: boolean;
}

/**
 * Bundles a Worker as `wrangler deploy` would (`--dry-run`) into `bundleDir`. Callers that start several
 * servers at once (the e2e tests) build once first and start them with `build: false`, so no server reads
 * a bundle another is still writing.
 */
export function buildBundle(configPath = defaultConfigPath, bundleDir = defaultBundleDir): void {
  execFileSync(
    process.execPath,
    [
      path.join(root, "node_modules", "wrangler", "bin", "wrangler.js"),
      "deploy",
      "--dry-run",
      "--outdir",
      bundleDir,
      "--config",
      configPath,
    ],
    {
      cwd: root,
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    },
  );
}

/** Builds the bundle, starts workerd, applies migrations, then opens the port. Returns the URL and a stop function. */
export async function startServer(opts: ServeOptions = {}): Promise<{
  url: string;
  mf: Miniflare;
  applied: string[];
  stop: (opts?: { drainMs?: number; onDraining?: () => void }) => Promise<void>;
}> {
  const port = opts.port ?? 8787;
  const host = opts.host ?? "127.0.0.1";
  const stateDir = path.resolve(opts.stateDir ?? path.join(root, ".wrangler", "state"));
  const configPath = path.resolve(opts.configPath ?? defaultConfigPath);
  const bundleDir = path.resolve(opts.bundleDir ?? defaultBundleDir);
  const config = unstable_readConfig({ config: configPath });
  // wrangler names the bundle after the entry point (workers/index.ts → index.js).
  const scriptPath = path.join(bundleDir, `${path.parse(config.main ?? "index.ts").name}.js`);
  if (opts.build !== false || !existsSync(scriptPath)) buildBundle(configPath, bundleDir);
  // The bundle is one file, so module rules do not apply (and Miniflare 5 cannot convert them).
  const { modulesRules: _rules, assets, ...workerOptions } = unstable_getMiniflareWorkerOptions(configPath).workerOptions;
  // The options, with or without the public socket. Miniflare 5 takes its own option shape;
  // convertV4MiniflareOptions maps wrangler's (v4) shape onto it.
  const log = new DrainLog(LogLevel.WARN);
  const options = (sockets: { host: string; port: number; proxy: false }[]) =>
    convertV4MiniflareOptions({
      workers: [
        {
          ...workerOptions,
          ...(assets && opts.assets !== false ? { assets } : {}),
          name: config.name ?? "breakwater",
          modules: true,
          scriptPath,
          bindings: {
            ...(workerOptions.bindings as Record<string, unknown> | undefined),
            ...(opts.vars ?? localVars()),
          },
          unsafeDirectSockets: sockets,
        },
      ],
      resourcePersistencePath: path.join(stateDir, "v3"),
      unsafeTriggerHandlers: true,
      // No network here: do not fetch the Request.cf object from Cloudflare; use the built-in placeholder.
      cf: false,
      ...(process.env.INSPECTOR_PORT ? { inspectorPort: Number(process.env.INSPECTOR_PORT) } : {}),
      // Miniflare's own "Ready on" names its internal entry port, not ours: keep its log to warnings.
      log,
    } as Parameters<typeof convertV4MiniflareOptions>[0]);
  // Without the public socket until the migrations are applied: a request that came in before would meet
  // empty databases (and, for the catalog list, a 503). The socket opens once the schema is there. A
  // Worker with no migrations (the bench baselines) opens it at once, without the second start.
  const socket = [{ host, port, proxy: false as const }];
  const migrating = config.d1_databases.some((d1: (typeof config.d1_databases)[number]) => Boolean(d1.migrations_dir));
  const mf = new Miniflare(options(migrating ? [] : socket));
  await mf.ready;
  const applied: string[] = [];
  for (const d1 of config.d1_databases) {
    if (d1.migrations_dir) applied.push(...(await migrate(mf, d1.binding, path.resolve(path.dirname(configPath), d1.migrations_dir))));
  }
  if (applied.length && opts.log !== false) console.log(`applied migrations: ${applied.join(", ")}`);
  if (migrating) await mf.setOptions(options(socket));
  let timer: NodeJS.Timeout | undefined;
  if (opts.cron !== false) {
    const crons = config.triggers?.crons ?? [];
    timer = setInterval(() => {
      for (const cron of crons)
        mf.dispatchFetch(`http://localhost/cdn-cgi/local/scheduled?cron=${encodeURIComponent(cron)}`).then(
          (r) => r.arrayBuffer(),
          (err: unknown) => console.error(`cron ${cron} failed:`, err),
        );
    }, 60_000);
    timer.unref();
  }
  return {
    url: `http://${host}:${port}`,
    mf,
    applied,
    stop: async (stopOpts = {}) => {
      if (timer) clearInterval(timer);
      if (stopOpts.drainMs) {
        log.draining = true;
        if (!(await drainWorkerd(stopOpts.drainMs, stopOpts.onDraining)))
          console.warn(`requests still in flight after ${stopOpts.drainMs} ms; stopping anyway`);
      }
      await mf.dispose();
      restoreWorkerdPath();
    },
  };
}

/** The workerd processes this process started (Miniflare runs one). `ps -A -o` works on Linux and macOS. */
function workerdChildren(): number[] {
  const out = execFileSync("ps", ["-A", "-o", "pid=,ppid=,comm="], { encoding: "utf8" });
  return out
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([, ppid, comm]) => Number(ppid) === process.pid && path.basename(comm ?? "") === "workerd")
    .map(([pid]) => Number(pid));
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Miniflare's log, without its restart messages while draining (the exit is ours, not a crash). */
class DrainLog extends Log {
  draining = false;
  override warn(message: string): void {
    if (!(this.draining && message.includes("crashed unexpectedly"))) super.warn(message);
  }
  override error(message: Error): void {
    if (!(this.draining && /failed to (re)?start/i.test(message.message))) super.error(message);
  }
}

const workerdPathBefore = process.env.MINIFLARE_WORKERD_PATH;
/** After a drain, the workerd that Miniflare starts is the real one again. */
function restoreWorkerdPath(): void {
  if (workerdPathBefore === undefined) delete process.env.MINIFLARE_WORKERD_PATH;
  else process.env.MINIFLARE_WORKERD_PATH = workerdPathBefore;
}

/**
 * Graceful stop: workerd, sent SIGTERM, stops accepting connections at once and exits when the requests in
 * flight have been answered. Miniflare would dispose of it with SIGKILL (a checkout in flight gets a reset
 * socket), so it is signalled first and waited for, at most `timeoutMs`. Miniflare restarts a workerd that
 * exits on its own (as after a crash), and a restarted one would serve the port again until the dispose
 * that follows: so the drain points Miniflare's workerd path (`MINIFLARE_WORKERD_PATH`, read at each start)
 * at a program that exits at once, and that restart fails. Returns whether every request finished.
 */
async function drainWorkerd(timeoutMs: number, onDraining?: () => void): Promise<boolean> {
  process.env.MINIFLARE_WORKERD_PATH = existsSync("/bin/false") ? "/bin/false" : "/usr/bin/false";
  const pids = workerdChildren();
  for (const pid of pids) process.kill(pid, "SIGTERM");
  onDraining?.();
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isAlive)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/** Demo event name; `--seed` creates it once. */
const DEMO_NAME = "Breakwater Demo Night";

/** Creates the demo event through the public API unless it exists. Returns its id. */
export async function seedDemo(url: string): Promise<string> {
  const post = async (p: string, body: unknown, token?: string) => {
    const res = await fetch(url + p, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`POST ${p} → ${res.status} ${await res.text()}`);
    return res.json() as Promise<Record<string, unknown>>;
  };
  const list = (await (await fetch(`${url}/v1/events`)).json()) as {
    events: { id: string; name: string }[];
  };
  const existing = list.events.find((e) => e.name === DEMO_NAME);
  if (existing) return existing.id;
  const { token } = (await post("/v1/auth/dev-token", {
    sub: "demo-organizer",
    role: "organizer",
  })) as { token: string };
  const now = Date.now();
  const { event } = (await post(
    "/v1/events",
    {
      name: DEMO_NAME,
      venue: "Harbour Arena",
      startsAt: new Date(now + 30 * 86_400_000).toISOString(),
      saleStartsAt: new Date(now - 60_000).toISOString(),
      currency: "EUR",
      perCustomerLimit: 4,
      holdSeconds: 300,
      sections: [
        {
          id: "floor",
          name: "Floor (standing)",
          kind: "ga",
          price: 4500,
          capacity: 2000,
          shards: 4,
        },
        {
          id: "a",
          name: "Block A",
          kind: "seated",
          price: 8900,
          rows: Array.from({ length: 10 }, (_, i) => ({
            id: String(i + 1),
            seats: 20,
          })),
        },
      ],
    },
    token,
  )) as { event: { id: string } };
  return event.id;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename);
if (isMain) {
  const seed = process.argv.includes("--seed");
  const server = await startServer({
    port: Number(process.env.PORT ?? 8787),
    host: process.env.HOST ?? "127.0.0.1",
    stateDir: process.env.STATE_DIR,
    build: process.env.BUILD !== "0",
    cron: process.env.CRON !== "off",
    assets: process.env.ASSETS !== "off",
    log: false,
  });
  // The storefront first: it is what a person opens.
  console.log(`Storefront: ${server.url}/   organizer console: ${server.url}/organizer`);
  console.log(`Breakwater is serving ${server.url} (workerd, direct socket; state in ${process.env.STATE_DIR ?? ".wrangler/state"})`);
  if (server.applied.length) console.log(`applied migrations: ${server.applied.join(", ")}`);
  if (seed) {
    const id = await seedDemo(server.url);
    console.log(`Demo event: ${server.url}/events/${id}   (API: ${server.url}/v1/events/${id})`);
    console.log(`  availability: ${server.url}/v1/events/${id}/availability   docs: ${server.url}/docs   operations: ${server.url}/ops`);
  }
  let stopping = false;
  const shutdown = async (sig: NodeJS.Signals) => {
    if (stopping) process.exit(130); // a second signal: do not wait
    stopping = true;
    const drainMs = Number(process.env.DRAIN_SECONDS ?? 30) * 1000;
    await server.stop({
      drainMs,
      onDraining: () => console.log(`${sig}: no new connections; finishing the requests in flight (at most ${drainMs / 1000} s)`),
    });
    console.log("stopped");
    process.exit(0);
  };
  // Miniflare's exit hook stops workerd at once on these signals (and exits 143): ours drains first. Its
  // hook on "exit" stays, so workerd never outlives this process.
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.removeAllListeners(sig);
    process.on(sig, shutdown);
  }
}

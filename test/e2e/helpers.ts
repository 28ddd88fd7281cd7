import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { type Browser, chromium } from "playwright-core";
import { startServer } from "../../scripts/serve";

/** A free TCP port on the loopback interface. */
export const freePort = (): Promise<number> =>
  new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });

/** Local-only vars and secrets for a test server (never used in production). */
export const testServerVars = (extra: Record<string, string> = {}): Record<string, string> => ({
  DEV_AUTH: "true",
  REQUEST_LOG: "off",
  JWT_SECRET: "e2e-jwt-secret-0123456789abcdef",
  SIGNING_SECRET: "e2e-signing-secret-0123456789",
  QSTASH_TOKEN: "x",
  QSTASH_CURRENT_SIGNING_KEY: "x",
  QSTASH_NEXT_SIGNING_KEY: "x",
  ...extra,
});

/** A `node scripts/serve.ts` process (`npm run serve`), in its own process group with its workerd. */
export interface ServeProcess {
  url: string;
  child: ChildProcess;
  /** Everything it printed. */
  output: () => string;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>;
  /** Sends a signal to the whole group: the Node process and its workerd (SIGKILL: a crash of the runtime). */
  signal: (sig: NodeJS.Signals) => void;
}

/**
 * Starts `scripts/serve.ts` as its own process on `port` with state in `stateDir` (BUILD=0: the node
 * project's global setup built the bundle), resolving once it says it serves. `env` adds variables
 * (declared [vars] of wrangler.toml may be overridden from the environment).
 */
export async function spawnServe(opts: { port: number; stateDir: string; env?: Record<string, string> }): Promise<ServeProcess> {
  const root = path.resolve(import.meta.dirname, "..", "..");
  const child = spawn(process.execPath, [path.join(root, "scripts", "serve.ts")], {
    cwd: root,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      PORT: String(opts.port),
      STATE_DIR: opts.stateDir,
      BUILD: "0",
      CRON: "off",
      ...testServerVars(),
      ...opts.env,
    },
  });
  let out = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, sig) => resolve(code ?? sig ?? "unknown")));
  const pid = child.pid;
  if (pid === undefined) throw new Error("serve.ts did not start");
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // Already gone.
    }
  };
  const deadline = Date.now() + 90_000;
  while (!out.includes("Breakwater is serving")) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`serve.ts exited while starting:\n${out}`);
    if (Date.now() > deadline) {
      signal("SIGKILL");
      throw new Error(`serve.ts did not start in time:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `http://127.0.0.1:${opts.port}`, child, output: () => out, exited, signal };
}

/** Polls `fn` every `everyMs` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached in ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Debian's Chromium (`.ci/run` installs it); CHROMIUM_PATH overrides. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/**
 * Launches headless Chromium for a browser test. The flags keep it off the network (this machine's closed
 * network refuses its background connections) and runnable as root; never a downloaded browser.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install chromium (.ci/run does)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** POSTs JSON to a running server (with a bearer token when given); throws on a non-2xx answer. */
export async function postJson<T>(base: string, path: string, body: unknown, token?: string): Promise<T> {
  const res = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`POST ${path} → ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** A token from the server's DEV_AUTH route. */
export const devToken = async (base: string, sub: string, role: "buyer" | "organizer" | "admin"): Promise<string> =>
  (await postJson<{ token: string }>(base, "/v1/auth/dev-token", { sub, role })).token;

/** Creates an event on sale now (one GA section `ga` of `capacity` unless `sections` are given); returns its id. */
export async function createSaleEvent(
  base: string,
  organizerToken: string,
  over: { name?: string; perCustomerLimit?: number; capacity?: number; sections?: unknown[] } = {},
): Promise<string> {
  const now = Date.now();
  const { event } = await postJson<{ event: { id: string } }>(
    base,
    "/v1/events",
    {
      name: over.name ?? "E2E",
      venue: "Loopback",
      startsAt: new Date(now + 86_400_000).toISOString(),
      saleStartsAt: new Date(now - 60_000).toISOString(),
      currency: "EUR",
      perCustomerLimit: over.perCustomerLimit ?? 4,
      sections: over.sections ?? [{ id: "ga", name: "GA", kind: "ga", price: 100, capacity: over.capacity ?? 50 }],
    },
    organizerToken,
  );
  return event.id;
}

/** A server of `scripts/serve.ts` in this process, for one test file. */
export interface TestServer {
  url: string;
  /** Stops it and removes its state directory. */
  stop: () => Promise<void>;
}

/**
 * Starts `scripts/serve.ts` in this process on a free port with a fresh state directory, no cron, and the
 * test secrets (`vars` adds or overrides). The node project's global setup has built the bundle.
 */
export async function startTestServer(vars: Record<string, string> = {}): Promise<TestServer> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "bw-e2e-"));
  const server = await startServer({ port: await freePort(), stateDir, cron: false, log: false, build: false, vars: testServerVars(vars) });
  return {
    url: server.url,
    stop: async () => {
      await server.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

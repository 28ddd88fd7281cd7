/**
 * Serves one of bench/catalog's baseline Workers the way `npm run serve` serves Breakwater:
 * scripts/serve.ts `startServer` (workerd through miniflare, `unsafeDirectSockets`, no dev proxy) with
 * the Worker folder's own wrangler.toml.
 *
 * `BASELINE=hello-world node bench/lib/serve-baseline.ts` (or `answer-floor`, `hello-world-with-app`); env PORT (8788), STATE_DIR
 * (a temporary folder is fine), FLOOR_DOCUMENTS (answer-floor: the JSON file of the answers to give,
 * written by bench/catalog). Prints "<name> is serving <url>" once it answers, stops on SIGTERM/SIGINT.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer } from "../../scripts/serve.ts";
import { BASELINES } from "./breakwater-process.ts";
import { envName } from "./options.ts";

const name = envName("BASELINE", BASELINES, "hello-world");
const dir = path.join(import.meta.dirname, "..", name);
const vars: Record<string, string> = process.env.FLOOR_DOCUMENTS ? { DOCUMENTS: readFileSync(process.env.FLOOR_DOCUMENTS, "utf8") } : {};

const stateDir = process.env.STATE_DIR ?? mkdtempSync(path.join(os.tmpdir(), `bw-${name}-`));
const server = await startServer({
  port: Number(process.env.PORT ?? 8788),
  host: "127.0.0.1",
  stateDir,
  configPath: path.join(dir, "wrangler.toml"),
  // Inside the Worker's folder: miniflare names modules relative to the config's folder and refuses "..".
  bundleDir: path.join(dir, ".build"),
  build: process.env.BUILD !== "0",
  vars,
  cron: false,
  log: false,
});
console.log(`${name} is serving ${server.url}`);
const shutdown = async () => {
  await server.stop();
  if (!process.env.STATE_DIR) rmSync(stateDir, { recursive: true, force: true });
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);

/**
 * Serves bench/catalog's hello-world baseline (bench/hello-world) the way `npm run serve` serves
 * Breakwater: scripts/serve.ts `startServer` (workerd through miniflare, `unsafeDirectSockets`, no dev
 * proxy) with the Worker folder's own wrangler.toml, so both servers sit behind the same path.
 *
 * `node bench/lib/serve-hello-world.ts`; env PORT (8788), STATE_DIR (a temporary folder is fine). Prints
 * "hello-world is serving <url>" once it answers, stops on SIGTERM/SIGINT.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer } from "../../scripts/serve.ts";

const dir = path.join(import.meta.dirname, "..", "hello-world");
const stateDir = process.env.STATE_DIR ?? mkdtempSync(path.join(os.tmpdir(), "bw-hello-world-"));
const server = await startServer({
  port: Number(process.env.PORT ?? 8788),
  host: "127.0.0.1",
  stateDir,
  configPath: path.join(dir, "wrangler.toml"),
  // Inside the Worker's folder: miniflare names modules relative to the config's folder and refuses "..".
  bundleDir: path.join(dir, ".build"),
  build: process.env.BUILD !== "0",
  // None of Breakwater's local vars: the baseline has no bindings.
  vars: {},
  cron: false,
  log: false,
});
console.log(`hello-world is serving ${server.url}`);
const shutdown = async () => {
  await server.stop();
  if (!process.env.STATE_DIR) rmSync(stateDir, { recursive: true, force: true });
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);

// `npm start` on a fresh clone: install dependencies first when node_modules is missing or stale.
// Runs on whatever Node npm found (20 is enough for npm ci); the scripts after it run on the Node 22
// that the `node` devDependency puts first on the PATH of npm scripts.
import { execSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";

const stale =
  !existsSync("node_modules/.package-lock.json") ||
  statSync("package-lock.json").mtimeMs > statSync("node_modules/.package-lock.json").mtimeMs;
if (stale) {
  console.log("Installing dependencies (npm ci)…");
  execSync("npm ci --no-audit --no-fund", { stdio: "inherit" });
}
if (!existsSync(".dev.vars")) {
  const { copyFileSync } = await import("node:fs");
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("Wrote .dev.vars from .dev.vars.example (local secrets; never used in production).");
}

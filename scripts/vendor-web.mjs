// Copies the browser bundles the pages load from npm packages into web/static/vendor/ (served as Workers
// Static Assets, never from a third-party CDN). Runs after `npm install` / `npm ci` (postinstall); the
// copies are not committed (.gitignore).
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const out = path.join(root, "web", "static", "vendor");
mkdirSync(out, { recursive: true });
/** [package file, copy's name] */
const bundles = [["@scalar/api-reference/dist/browser/standalone.js", "scalar-api-reference.js"]];
for (const [from, to] of bundles) copyFileSync(path.join(root, "node_modules", from), path.join(out, to));

// Prints a README table generated from the code: `node scripts/print-docs.mjs metrics|config`.
// The modules are TypeScript with extensionless imports, so they are bundled with esbuild first.
import path from "node:path";
import { build } from "esbuild";

const root = path.resolve(import.meta.dirname, "..");
const tables = { metrics: ["lib/metric-catalog.ts", "metricsMarkdown"], config: ["lib/config.ts", "configMarkdown"] };
const which = tables[process.argv[2]];
if (!which) {
  console.error(`usage: node scripts/print-docs.mjs ${Object.keys(tables).join("|")}`);
  process.exit(2);
}
const out = await build({ entryPoints: [path.join(root, which[0])], bundle: true, format: "esm", platform: "neutral", write: false });
const mod = await import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString("base64")}`);
console.log(mod[which[1]]());

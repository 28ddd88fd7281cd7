// `npm run dev` (wrangler dev) reads .dev.vars; create it from the example when missing.
import { copyFileSync, existsSync } from "node:fs";

if (!existsSync(".dev.vars")) copyFileSync(".dev.vars.example", ".dev.vars");

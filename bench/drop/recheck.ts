/**
 * Re-runs the checker on a saved drop (`<report>.history.json`: the history and the final state), e.g.
 * after changing the checker: `node bench/drop/recheck.ts bench/results/drop-….history.json`. Exit code 1
 * when it finds a violation.
 */
import { readFileSync } from "node:fs";
import { check } from "./checker.ts";
import type { FinalState, History } from "./history.ts";

const file = process.argv[2];
if (!file) throw new Error("usage: node bench/drop/recheck.ts <drop-….history.json>");
const { history, final } = JSON.parse(readFileSync(file, "utf8")) as { history: History; final: FinalState };
const verdict = check(history, final);
for (const v of verdict.violations) {
  console.error(`[${v.rule}] ${v.message}`);
  for (const line of v.timeline.slice(0, 40)) console.error(`  ${line}`);
}
console.log(
  JSON.stringify({
    ok: verdict.ok,
    counts: verdict.counts,
    orders: verdict.orders,
    ticketsSold: verdict.ticketsSold,
    admission: verdict.admission,
  }),
);
process.exitCode = verdict.ok ? 0 : 1;

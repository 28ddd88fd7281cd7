/**
 * `npm run drop:table`: the drop without faults, each fault alone and all of them together, one after the
 * other (each `npm run drop` writes its own results file, bench/results/drop-<date>-<faults>.json, with
 * its report beside it), then one Markdown table of them: buyers, seats sold, tickets per minute,
 * admission rate against its ceiling, p99 per step, violations, whether the client kept up, the load
 * average, and the command of each row.
 *
 *   npm run drop:table                                   # the default size (20,000 buyers, 2,000 seats)
 *   npm run drop:table -- --scenarios all                # only the default drop (`npm run drop`)
 *   npm run drop:table -- --buyers 5000 --seats 1000     # another size; any other drop option passes through
 *
 * Exit code 1 when a run found a violation (or failed).
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const root = path.resolve(import.meta.dirname, "..", "..");
const SCENARIOS = ["none", "inventory_slow", "payments", "shard_writes", "kill", "all"] as const;

const { values, tokens } = parseArgs({
  options: {
    scenarios: { type: "string", default: SCENARIOS.join(",") },
    seed: { type: "string", default: "42" },
  },
  strict: false,
  tokens: true,
});
const scenarios = String(values.scenarios)
  .split(",")
  .map((s) => s.trim());
for (const s of scenarios)
  if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`--scenarios: a list of ${SCENARIOS.join(", ")}; not ${s}`);
if (!/^\d+$/.test(String(values.seed))) throw new Error("--seed: a whole number");
// Every other option goes to each drop as given.
const passThrough = tokens
  .filter((t) => t.kind === "option" && t.name !== "scenarios" && t.name !== "seed")
  .flatMap((t) => (t.kind === "option" ? [t.value === undefined ? `--${t.name}` : `--${t.name}=${t.value}`] : []));
if (passThrough.some((a) => /^--(faults|out|quiet)\b/.test(a))) throw new Error("--faults, --out and --quiet are set by the table");

interface Last {
  ok: boolean;
  violations: number;
  sold: number;
  ticketsPerMinute: number;
  admittedPerMinute: number;
  report: string;
}
interface Report {
  date: string;
  cpu?: string;
  cores: number;
  code: string;
  loadAverage: { start: number[]; end: number[] };
  options: { buyers: number; seats: number; admitPerMinute: number };
  summary: {
    ticketsPerMinute90: number;
    steps: Record<string, { p99: number }>;
    client: {
      laggingSeconds: number;
      seconds: number;
      lagP99Max: number;
      backlogBuyers: number;
      backlogNeverStarted: number;
      clientCores: number;
      serverCores: number | null;
    };
  };
}

function run(args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, "bench/drop/drop.ts"), ...args], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, stdout }));
  });
}

const rows: string[] = [];
let failed = false;
for (const [i, scenario] of scenarios.entries()) {
  const args = [`--faults=${scenario}`, `--seed=${values.seed}`, ...passThrough, ...(i > 0 ? ["--reuse-build"] : [])];
  const command = `npm run drop -- ${args.filter((a) => a !== "--reuse-build").join(" ")}`;
  console.error(
    `drop:table: ${command} (load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")})`,
  );
  const { code, stdout } = await run([...args, "--quiet"]);
  const lastLine = stdout.trim().split("\n").at(-1) ?? "";
  let last: Last;
  try {
    last = JSON.parse(lastLine) as Last;
  } catch {
    failed = true;
    rows.push(`| ${scenario} | – | – | – | – | – | – | – | – | – | – | run failed (exit ${code}) | – | \`${command}\` |`);
    continue;
  }
  if (code !== 0 || !last.ok) failed = true;
  const r = JSON.parse(readFileSync(path.join(root, last.report.replace(/\.html$/, ".json")), "utf8")) as Report;
  const c = r.summary.client;
  const client =
    `lag p99 ≥ 100 ms in ${c.laggingSeconds}/${c.seconds} s (max ${c.lagP99Max} ms)` +
    (c.backlogBuyers ? `; backlog ${c.backlogBuyers} (${c.backlogNeverStarted} never started)` : "") +
    `; CPU client ${c.clientCores}, server ${c.serverCores ?? "–"} cores`;
  rows.push(
    `| ${scenario} | ${r.options.buyers} | ${r.options.seats} | ${last.sold} | ${last.ticketsPerMinute} (${r.summary.ticketsPerMinute90}) | ${last.admittedPerMinute} (${r.options.admitPerMinute}) | ` +
      `${["join", "poll", "hold", "pay", "order"].map((s) => Math.round(r.summary.steps[s]?.p99 ?? 0)).join(" | ")} | ${last.violations} | ${client} | ` +
      `${r.loadAverage.start[0]} → ${r.loadAverage.end[0]} | \`${command}\` |`,
  );
  if (i === 0)
    console.log(
      `${r.date.slice(0, 10)}, ${r.cpu ?? "?"} (${r.cores} cores), code ${r.code}; load average: 1-minute, start → end of each run\n`,
    );
}
console.log(
  "| faults | buyers | seats | sold | tickets/min (to 90 %) | admitted/min (ceiling) | p99 join ms | p99 poll ms | p99 hold ms | p99 pay ms | p99 order ms | violations | client | load | command |",
);
console.log(`|---|${"---:|".repeat(11)}---|---|---|`);
for (const row of rows) console.log(row);
process.exitCode = failed ? 1 : 0;

/**
 * Where a bench writes its results: `bench/results/<scenario>-<date>[-<variant>][-<RESULTS_TAG>].json`, never over an
 * earlier file: a second run on the same day (and tag) gets `-2`, then `-3`…, so runs compared with each
 * other (code before and after a change) all keep their figures until the latest is chosen.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..", "..");
const dir = path.join(root, "bench", "results");

/** The code a run measured: `git describe --always --dirty` (a commit, `-dirty` with uncommitted changes). */
export const codeVersion = (): string => execFileSync("git", ["describe", "--always", "--dirty"], { cwd: root, encoding: "utf8" }).trim();

/** What a results file says of its run: when, which code, on what machine and Node. */
export const runInfo = () => ({
  date: new Date().toISOString(),
  code: codeVersion(),
  cores: os.cpus().length,
  cpu: os.cpus()[0]?.model,
  node: process.version,
});

/** A tag for the file name from `RESULTS_TAG` (letters, digits, `.`, `_`, `-`), or none. */
function tag(): string {
  const t = process.env.RESULTS_TAG ?? "";
  if (t && !/^[A-Za-z0-9._-]{1,60}$/.test(t)) throw new Error("RESULTS_TAG: up to 60 letters, digits, '.', '_' or '-'");
  return t ? `-${t}` : "";
}

/**
 * Writes `data` as indented JSON to a new results file of `scenario` (`variant`: a fixed part of the name
 * after the date, such as spike's `presale`); returns its path from the repository root.
 */
export function writeResults(scenario: string, data: unknown, opts: { date?: Date; variant?: string } = {}): string {
  const file = resultsPath(scenario, opts);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`, { flag: "wx" });
  return path.relative(root, file);
}

/**
 * The absolute path the next results file of `scenario` gets (as writeResults names it), in `opts.dir`
 * (default bench/results), without writing it: for a bench that writes companions beside it (a log, a report).
 */
export function resultsPath(scenario: string, opts: { date?: Date; variant?: string; dir?: string } = {}): string {
  const d = opts.dir ?? dir;
  mkdirSync(d, { recursive: true });
  const date = (opts.date ?? new Date()).toISOString().slice(0, 10);
  const base = `${scenario}-${date}${opts.variant ? `-${opts.variant}` : ""}${tag()}`;
  let file = path.join(d, `${base}.json`);
  for (let n = 2; existsSync(file); n++) file = path.join(d, `${base}-${n}.json`);
  return file;
}

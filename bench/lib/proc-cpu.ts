/**
 * CPU time of a server process from /proc (Linux), to report what each request costs the server in CPU:
 * a figure that, unlike throughput, barely moves when other work shares the machine.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on Linux everywhere that matters). */
const TICKS = 100;

/** User + system CPU seconds used so far by `pid` (all its threads); undefined when it cannot be read. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces) start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return undefined;
  }
}

/** Processes whose parent is `ppid` and whose command name is `comm` (e.g. the workerd that miniflare started). */
function childrenNamed(ppid: number, comm: string): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (parent === ppid && name === comm) out.push(Number(e));
    } catch {
      // The process went away while we looked.
    }
  }
  return out;
}

/** Node processes running `script` with `PORT=<port>` in their environment (how bench servers are told apart). */
function nodeServing(script: string, port: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, "utf8");
      if (!cmd.includes(script)) continue;
      const env = readFileSync(`/proc/${e}/environ`, "utf8").split("\0");
      if (env.includes(`PORT=${port}`)) out.push(Number(e));
    } catch {
      // Not ours to read, or gone.
    }
  }
  return out;
}

/** The workerd process behind a bench server started by `script` on `port`; undefined when not found. */
export function workerdOf(script: string, port: number): number | undefined {
  for (const parent of nodeServing(script, port)) {
    const [pid] = childrenNamed(parent, "workerd");
    if (pid) return pid;
  }
  return undefined;
}

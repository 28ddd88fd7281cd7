/**
 * A shell script that miniflare runs instead of workerd (`MINIFLARE_WORKERD_PATH`), to run the real binary
 * under something else: line-buffered with its stdout in a file (bench/lib/gc-trace.ts), under valgrind
 * (bench/catalog-instructions.ts).
 */
import { chmodSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

/** The workerd binary miniflare runs by default (the `workerd` package's default export). */
const workerd = (createRequire(import.meta.url)("workerd") as { default: string }).default;

/**
 * Writes an executable script at `file` that execs `command(bin)`, where `bin` is the quoted path of the
 * workerd binary (the command passes on miniflare's arguments with `"$@"`); returns `file`.
 */
export function workerdWrapper(file: string, command: (bin: string) => string): string {
  writeFileSync(file, `#!/bin/sh\nexec ${command(JSON.stringify(workerd))}\n`);
  chmodSync(file, 0o755);
  return file;
}

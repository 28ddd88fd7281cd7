/**
 * The logger: one JSON line per entry (`{"level","msg",...fields}`), which Workers Logs and `wrangler tail`
 * index by field. `info` goes to stdout, `warn` and `error` to stderr. Fields must not carry secrets or
 * payment tokens; ids and error texts are fine.
 */

type LogLevel = "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;

/** Writes one entry. */
function write(level: LogLevel, msg: string, fields: LogFields = {}): void {
  const line = JSON.stringify({ level, msg, ...fields });
  if (level === "info") console.log(line);
  else console.error(line);
}

/** The process-wide logger. */
export const log = {
  info: (msg: string, fields?: LogFields): void => write("info", msg, fields),
  warn: (msg: string, fields?: LogFields): void => write("warn", msg, fields),
  error: (msg: string, fields?: LogFields): void => write("error", msg, fields),
};

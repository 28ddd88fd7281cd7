/** Reading a bench's numeric options from the environment. */

/** The number in env `name`, clamped to [`min`, `max`]; `def` when unset or not a number. */
export const envNumber = (name: string, def: number, min: number, max: number): number => {
  const v = Number(process.env[name] ?? def);
  return Number.isFinite(v) ? Math.min(max, Math.max(min, v)) : def;
};

/** {@link envNumber}, rounded down: counts, ports, seconds. */
export const envInt = (name: string, def: number, min: number, max: number): number => Math.floor(envNumber(name, def, min, max));

/** The p99 a saturation step may reach: saturation throughput is the highest rate whose p99 stays within it. */
export const SATURATION_P99_MS = 1_000;

/** The buyer counts of a bench's saturation steps (env SATURATION, comma-separated; "" for none), the stated load among them, ascending. */
export function saturationSteps(stated: number, def: string): number[] {
  const steps = [stated, ...(process.env.SATURATION ?? def).split(",").filter(Boolean).map(Number)];
  if (steps.some((c) => !Number.isInteger(c) || c < 1 || c > 1_024)) throw new Error("SATURATION: buyer counts 1..1024, comma-separated");
  return [...new Set(steps)].sort((a, b) => a - b);
}

/** Reading a bench's options from the environment: numbers, and names from a fixed list. */

/** The number in env `name`, clamped to [`min`, `max`]; `def` when unset or not a number. */
export const envNumber = (name: string, def: number, min: number, max: number): number => {
  const v = Number(process.env[name] ?? def);
  return Number.isFinite(v) ? Math.min(max, Math.max(min, v)) : def;
};

/** {@link envNumber}, rounded down: counts, ports, seconds. */
export const envInt = (name: string, def: number, min: number, max: number): number => Math.floor(envNumber(name, def, min, max));

/** The names in env `name`, a comma list, each one of `allowed`; `def` when unset. Throws on any other name. */
export function envNames<const T extends string>(name: string, allowed: readonly T[], def: readonly T[]): T[] {
  const names = (process.env[name] ?? def.join(",")).split(",").filter(Boolean);
  for (const n of names)
    if (!(allowed as readonly string[]).includes(n)) throw new Error(`${name}: a comma list of ${allowed.join(", ")}, not ${n}`);
  return names as T[];
}

/** The one name in env `name`, one of `allowed`; `def` when unset. Throws on any other name. */
export function envName<const T extends string>(name: string, allowed: readonly T[], def: T): T {
  const n = process.env[name] ?? def;
  if (!(allowed as readonly string[]).includes(n)) throw new Error(`${name}: one of ${allowed.join(", ")}, not ${n}`);
  return n as T;
}

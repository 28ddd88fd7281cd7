/** Reading a bench's numeric options from the environment. */

/** The number in env `name`, clamped to [`min`, `max`]; `def` when unset or not a number. */
export const envNumber = (name: string, def: number, min: number, max: number): number => {
  const v = Number(process.env[name] ?? def);
  return Number.isFinite(v) ? Math.min(max, Math.max(min, v)) : def;
};

/** {@link envNumber}, rounded down: counts, ports, seconds. */
export const envInt = (name: string, def: number, min: number, max: number): number => Math.floor(envNumber(name, def, min, max));

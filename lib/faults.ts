import { config } from "./config";

/**
 * Fault injection for rehearsing a sale (`npm run drop`): named fault windows that a few injection points
 * in the product consult. Off in production: the windows can only be opened through `PUT /v1/admin/faults`
 * (admin), and that route exists only when the `FAULT_INJECTION` var is on (wrangler.toml sets it "false";
 * the drop's local server turns it on). With no window open, each injection point costs one map-size check.
 *
 * The windows live in the isolate's memory. Locally that is the whole system (one workerd process, one
 * isolate for the edge, the Durable Objects and the queue consumers); a restart forgets them, and the drop
 * opens what is still due again. On Cloudflare each isolate would have its own: another reason to keep it off.
 */

/** The injection points. */
export const FAULT_NAMES = [
  /** The sandbox payment provider fails every charge and void like an outage (PaymentUnavailableError). */
  "payments",
  /** Every order-shard write fails (the orders consumer retries, then dead-letters). */
  "shard_writes",
  /** Every order-shard write takes `delayMs` more, one at a time per shard (a slow database: bench/orders). */
  "shard_slow",
  /** Each Inventory DO call holds the object's input for `delayMs` after it: the object serves ≤ 1000/delayMs calls/s. */
  "inventory_slow",
] as const;
export type FaultName = (typeof FAULT_NAMES)[number];

/** An open fault window. */
export interface FaultWindow {
  /** Epoch ms when it closes by itself. */
  until: number;
  /** `inventory_slow`: the stall per call; `shard_slow`: the wait before each shard write (ms). */
  delayMs?: number;
}

const windows = new Map<FaultName, FaultWindow>();

/** True when `env` enables the fault API (`FAULT_INJECTION` "true"/"on"/"1"/"yes"). */
export const faultInjectionEnabled = (env: object): boolean => config(env).FAULT_INJECTION;

/** Opens (or moves) the window of `name` until `until`; `until` in the past closes it. */
export function setFault(name: FaultName, window: FaultWindow): void {
  if (window.until <= Date.now()) windows.delete(name);
  else windows.set(name, window);
}

/** Closes every window. */
export function clearFaults(): void {
  windows.clear();
}

/** The open window of `name`, if any (an expired one is dropped). */
export function faultWindow(name: FaultName, now = Date.now()): FaultWindow | undefined {
  if (windows.size === 0) return undefined;
  const w = windows.get(name);
  if (!w) return undefined;
  if (w.until <= now) {
    windows.delete(name);
    return undefined;
  }
  return w;
}

/** Every open window by name. */
export function openFaults(now = Date.now()): Partial<Record<FaultName, FaultWindow>> {
  const out: Partial<Record<FaultName, FaultWindow>> = {};
  for (const name of FAULT_NAMES) {
    const w = faultWindow(name, now);
    if (w) out[name] = { ...w };
  }
  return out;
}

/** The error an injection point throws. */
class InjectedFault extends Error {
  constructor(name: FaultName, what: string) {
    super(`${what} (injected fault: ${name})`);
    this.name = "InjectedFault";
  }
}

/** Per lane (a shard), when the lane's last delayed call ends (epoch ms): {@link delayIfFaulted} serializes. */
const laneFreeAt = new Map<string, number>();

/**
 * Waits the window's `delayMs` while the window of `name` is open (at once otherwise). With a `lane`, calls
 * of that lane take their `delayMs` one after the other, like a database that runs one query at a time
 * (D1): n concurrent writes to one shard finish after n × delayMs. Each call sleeps on its own timer.
 */
export async function delayIfFaulted(name: FaultName, lane?: string): Promise<void> {
  const delay = faultWindow(name)?.delayMs;
  if (!delay) return;
  const now = Date.now();
  let until = now + delay;
  if (lane !== undefined) {
    until = Math.max(now, laneFreeAt.get(lane) ?? 0) + delay;
    laneFreeAt.set(lane, until);
  }
  await new Promise((r) => setTimeout(r, until - now));
}

/** Throws {@link InjectedFault} while the window of `name` is open. */
export function failIfFaulted(name: FaultName, what: string): void {
  if (faultWindow(name)) throw new InjectedFault(name, what);
}

import type { InventoryReport } from "./inventory-types";

/**
 * The waiting room's adaptive admission rate: additive increase, multiplicative decrease (AIMD) between a
 * floor and the organizer's `admitPerMinute` ceiling, driven by the health the Inventory DOs report.
 * Pure: the WaitingRoom DO calls these once per tick with the reports that arrived since the last tick.
 */

/** Bounds and steps of one room's rate, all in admissions per minute. */
export interface RatePolicy {
  /** The organizer's `admitPerMinute`: never exceeded. */
  ceiling: number;
  /** Never gone below while the sale runs (5 % of the ceiling, at least 1). */
  floor: number;
  /** Where a room starts at the opening (half the ceiling). */
  initial: number;
  /** Added per healthy tick (5 % of the ceiling: floor to ceiling in about 20 s). */
  increase: number;
  /** Multiplier on overload. */
  decrease: number;
  /** p95 queueing delay inside an Inventory DO above which it counts as overloaded (ms). */
  latencyTargetMs: number;
  /** At most one decrease per this many ms (one report round trip), so one bad second halves once. */
  cooldownMs: number;
}

/**
 * The policy for a ceiling. The latency target (100 ms) sits well under the Inventory DO's own overload
 * threshold (250 ms of queueing), so the room backs off before the inventory starts refusing.
 */
export function ratePolicy(admitPerMinute: number): RatePolicy {
  const ceiling = Math.max(1, Math.floor(admitPerMinute));
  const floor = Math.min(ceiling, Math.max(1, Math.round(ceiling * 0.05)));
  return {
    ceiling,
    floor,
    initial: Math.max(floor, Math.round(ceiling / 2)),
    increase: Math.max(1, ceiling * 0.05),
    decrease: 0.5,
    latencyTargetMs: 100,
    cooldownMs: 2_000,
  };
}

/** What the latest reports say about the inventory, with the reason (logged by the DO). */
export interface HealthSignal {
  kind: "overload" | "steady" | "headroom";
  reason: string;
}

/**
 * Classifies the reports received since the last tick:
 * - `overload`: any DO refused work as overloaded, or its p95 queueing delay is above the target;
 * - `steady`: a DO is warm (p95 above half the target) or has active holds above half of what it still
 *   has available (admitting faster would mostly create `sold_out`/`seats_unavailable` answers);
 * - `headroom`: otherwise, and also when nothing reported (an idle inventory publishes nothing).
 */
export function healthSignal(reports: readonly InventoryReport[], policy: Pick<RatePolicy, "latencyTargetMs">): HealthSignal {
  if (!reports.length) return { kind: "headroom", reason: "no inventory activity reported" };
  let steady: string | null = null;
  for (const r of reports) {
    const who = `${r.sectionId}#${r.shard}`;
    if (r.health.overloads > 0) return { kind: "overload", reason: `${who} refused ${r.health.overloads} as overloaded` };
    if (r.health.holdLatencyP95Ms > policy.latencyTargetMs)
      return { kind: "overload", reason: `${who} p95 ${r.health.holdLatencyP95Ms} ms > ${policy.latencyTargetMs} ms` };
    if (!steady && r.health.holdLatencyP95Ms > policy.latencyTargetMs / 2) steady = `${who} p95 ${r.health.holdLatencyP95Ms} ms`;
    if (!steady && r.health.activeHolds > 0 && r.health.activeHolds > r.available / 2)
      steady = `${who} has ${r.health.activeHolds} active holds for ${r.available} available`;
  }
  return steady ? { kind: "steady", reason: steady } : { kind: "headroom", reason: "latency and holds well within limits" };
}

/** The rate after one tick, and when it last decreased. */
export interface RateStep {
  rate: number;
  lastDecreaseAt: number;
}

/** One AIMD step: halve on overload (at most once per cooldown), add a step on headroom, else hold. */
export function nextRate(rate: number, signal: HealthSignal, policy: RatePolicy, now: number, lastDecreaseAt: number): RateStep {
  const clamp = (r: number) => Math.min(policy.ceiling, Math.max(policy.floor, r));
  if (signal.kind === "overload") {
    if (now - lastDecreaseAt < policy.cooldownMs) return { rate: clamp(rate), lastDecreaseAt };
    return { rate: clamp(rate * policy.decrease), lastDecreaseAt: now };
  }
  if (signal.kind === "headroom") return { rate: clamp(rate + policy.increase), lastDecreaseAt };
  return { rate: clamp(rate), lastDecreaseAt };
}

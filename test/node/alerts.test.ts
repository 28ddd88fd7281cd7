import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { METRIC_CATALOG } from "../../lib/metric-catalog";

describe("docs/prometheus-alerts.yml", () => {
  it("alerts only on catalogued metrics, including the dead-letter last resort and losses", () => {
    const rules = readFileSync(path.join(import.meta.dirname, "../../docs/prometheus-alerts.yml"), "utf8");
    const used = new Set(rules.match(/breakwater_[a-z_]+/g) ?? []);
    const known = new Set(METRIC_CATALOG.map((m) => m.name));
    expect([...used].filter((n) => !known.has(n))).toEqual([]);
    expect(used).toContain("breakwater_dead_letters_lost_total");
    expect(used).toContain("breakwater_dead_letters_last_resort_total");
  });
});

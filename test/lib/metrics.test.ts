import { describe, expect, it } from "vitest";
import { type MetricSpec, Registry } from "../../lib/metrics";

const C: MetricSpec = { name: "c_total", type: "counter", labels: ["layer"], help: "a counter" };
const D: MetricSpec = { name: "d_ms", type: "histogram", labels: ["route"], help: "a histogram" };

describe("Registry: series resolved once", () => {
  it("count into the same series as inc/observe, and find it again after a reset", () => {
    const r = new Registry();
    const hits = r.counterSeries(C, { layer: "micro" });
    hits.inc();
    hits.inc(2);
    r.inc(C, { layer: "micro" });
    expect(r.value("c_total", { layer: "micro" })).toBe(4);
    expect(r.render()).toContain('c_total{layer="micro"} 4');
    expect(r.render()).toContain("# HELP c_total a counter");

    const ms = r.histogramSeries(D, { route: "/x" });
    ms.observe(3);
    r.observe(D, { route: "/x" }, 40);
    const text = r.render();
    expect(text).toContain('d_ms_bucket{route="/x",le="2"} 0');
    expect(text).toContain('d_ms_bucket{route="/x",le="5"} 1');
    expect(text).toContain('d_ms_bucket{route="/x",le="50"} 2');
    expect(text).toContain('d_ms_count{route="/x"} 2');
    expect(text).toContain('d_ms_sum{route="/x"} 43');

    // After a reset the handles write into the new registry state, not into the forgotten entries.
    r.reset();
    expect(r.value("c_total", { layer: "micro" })).toBe(0);
    hits.inc();
    ms.observe(1);
    expect(r.value("c_total", { layer: "micro" })).toBe(1);
    expect(r.render()).toContain('d_ms_count{route="/x"} 1');
  });

  it("do nothing while the registry is disabled", () => {
    const r = new Registry();
    const hits = r.counterSeries(C, {});
    r.enabled = false;
    hits.inc();
    r.enabled = true;
    expect(r.value("c_total")).toBe(0);
    expect(r.render()).not.toContain("c_total");
  });
});

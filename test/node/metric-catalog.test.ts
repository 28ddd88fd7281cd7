import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { configMarkdown } from "../../lib/config";
import { METRIC_CATALOG, metric, metricsMarkdown } from "../../lib/metric-catalog";

const root = path.resolve(import.meta.dirname, "../..");
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : [];
  });
}

describe("metric names and labels are stable and documented", () => {
  const code = ["lib", "workers", "durable-objects", "queues"].flatMap((d) => sources(path.join(root, d)));
  const texts = code.map((file) => ({ file: path.relative(root, file), text: readFileSync(file, "utf8") }));

  it("updates metrics only through the catalog's handles, and uses every handle", () => {
    for (const { file, text } of texts) {
      if (file === "lib/metrics.ts") continue;
      expect(text, `${file} updates a metric by name`).not.toMatch(/\bmetrics\.(?:inc|set|observe|counterSeries|histogramSeries)\(/);
    }
    const all = texts.map((t) => t.text).join("\n");
    for (const key of Object.keys(metric)) expect(all, `metric.${key} is declared but never updated`).toContain(`metric.${key}.`);
  });

  it("documents every catalogued metric in the README", () => {
    const squash = (t: string) => t.replace(/[ \t]+/g, " ").replace(/ ?\| ?/g, "|");
    const readme = squash(readFileSync(path.join(root, "README.md"), "utf8"));
    expect(readme).toContain(squash(metricsMarkdown()));
  });

  it("uses Prometheus naming conventions", () => {
    for (const m of METRIC_CATALOG) {
      expect(m.name).toMatch(/^breakwater_[a-z0-9_]+$/);
      if (m.type === "counter") expect(m.name).toMatch(/_total$/);
    }
  });
});

describe("configuration vars are documented", () => {
  it("lists every var of lib/config.ts with its default in the README", () => {
    const squash = (t: string) => t.replace(/[ \t]+/g, " ").replace(/ ?\| ?/g, "|");
    expect(squash(readFileSync(path.join(root, "README.md"), "utf8"))).toContain(squash(configMarkdown()));
  });
});

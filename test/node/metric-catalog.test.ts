import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { METRIC_CATALOG, metricsMarkdown } from "../../lib/metric-catalog";

const root = path.resolve(import.meta.dirname, "../..");
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : [];
  });
}

describe("metric names and labels are stable and documented", () => {
  const code = ["lib", "workers", "durable-objects", "queues"].flatMap((d) => {
    try {
      return sources(path.join(root, d));
    } catch {
      return [];
    }
  });
  const emitted = new Map<string, Set<string>>();
  for (const file of code) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/metrics\.(?:inc|set|observe)\(\s*"([a-z0-9_]+)",\s*\{([^}]*)\}/g)) {
      // Drop call arguments (which may contain commas), then read the keys of the label object.
      let body = m[2] ?? "";
      for (let prev = ""; prev !== body; ) {
        prev = body;
        body = body.replace(/\([^()]*\)/g, "");
      }
      const labels = body
        .split(",")
        .map((part) => (part.includes(":") ? part.split(":")[0] : part)?.trim() ?? "")
        .filter(Boolean);
      const set = emitted.get(m[1] as string) ?? new Set<string>();
      for (const l of labels) set.add(l);
      emitted.set(m[1] as string, set);
    }
  }

  it("emits only metrics listed in the catalog, with the listed labels", () => {
    expect(emitted.size).toBeGreaterThan(5);
    for (const [name, labels] of emitted) {
      const spec = METRIC_CATALOG.find((m) => m.name === name);
      expect(spec, `${name} is not in lib/metric-catalog.ts`).toBeDefined();
      for (const l of labels) expect(spec?.labels, `${name} label ${l}`).toContain(l);
    }
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

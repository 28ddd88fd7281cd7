/**
 * In-isolate metrics with Prometheus text exposition.
 *
 * Each isolate keeps its own counters; `/metrics` shows the isolate that answered it (plus the figures
 * the Durable Objects report about themselves). Across isolates, production aggregates through Workers
 * Analytics Engine; see README "Metrics". Label values must come from closed sets (route patterns,
 * status codes), never from user input, so the series count stays bounded.
 */

type Labels = Record<string, string | number>;

const DEFAULT_BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

interface CounterDef {
  kind: "counter" | "gauge";
  help: string;
  values: Map<string, { labels: Labels; value: number }>;
}
interface HistogramEntry {
  labels: Labels;
  counts: number[];
  sum: number;
  count: number;
}
interface HistogramDef {
  kind: "histogram";
  help: string;
  buckets: number[];
  values: Map<string, HistogramEntry>;
}
type Def = CounterDef | HistogramDef;

const keyOf = (labels: Labels): string => {
  let k = "";
  for (const name in labels) k += `${name}=${labels[name]},`;
  return k;
};

const escapeLabel = (v: string | number): string => String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/** One observation: an increment in the first bucket that fits (render() makes the counts cumulative). */
function record(def: HistogramDef, entry: HistogramEntry, value: number): void {
  let i = 0;
  while (i < def.buckets.length && value > (def.buckets[i] as number)) i++;
  if (i < def.buckets.length) entry.counts[i] = (entry.counts[i] as number) + 1;
  entry.sum += value;
  entry.count += 1;
}

const renderLabels = (labels: Labels, extra?: [string, string]): string => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  if (extra) parts.push(`${extra[0]}="${extra[1]}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

/** One counter series, resolved once (see {@link Registry.counterSeries}). */
export interface CounterSeries {
  inc(by?: number): void;
}

/** One histogram series, resolved once (see {@link Registry.histogramSeries}). */
export interface HistogramSeries {
  observe(value: number): void;
}

/** A registry of named metrics. One default instance serves the Worker; tests may make their own. */
export class Registry {
  private readonly defs = new Map<string, Def>();
  /** Bumped by {@link Registry.reset}, so resolved series find their entry again. */
  private generation = 0;
  /** When false, every update is a no-op (TELEMETRY=off: used to measure what metrics cost). */
  enabled = true;

  /**
   * A counter series for a hot path: the same as `inc(name, labels, by, help)`, with the series looked up
   * once instead of building its labels key on every update. `labels` must not change afterwards.
   */
  counterSeries(name: string, labels: Labels, help = ""): CounterSeries {
    const entry = this.resolved(() => this.counterEntry(name, labels, help));
    return {
      inc: (by = 1) => {
        if (this.enabled) entry().value += by;
      },
    };
  }

  /** A histogram series for a hot path: the same as `observe(name, labels, value, help, buckets)`, looked up once. */
  histogramSeries(name: string, labels: Labels, help = "", buckets = DEFAULT_BUCKETS_MS): HistogramSeries {
    const series = this.resolved(() => {
      const def = this.histogram(name, help, buckets);
      return { def, entry: this.histogramEntry(def, labels) };
    });
    return {
      observe: (value) => {
        if (!this.enabled) return;
        const { def, entry } = series();
        record(def, entry, value);
      },
    };
  }

  /** Adds `by` (default 1) to a counter. */
  inc(name: string, labels: Labels = {}, by = 1, help = ""): void {
    if (!this.enabled) return;
    this.counterEntry(name, labels, help).value += by;
  }

  /** Sets a gauge. */
  set(name: string, labels: Labels, value: number, help = ""): void {
    if (!this.enabled) return;
    this.scalar(name, "gauge", help).values.set(keyOf(labels), { labels, value });
  }

  /** Records one observation in a histogram (milliseconds by default buckets). */
  observe(name: string, labels: Labels, value: number, help = "", buckets = DEFAULT_BUCKETS_MS): void {
    if (!this.enabled) return;
    const def = this.histogram(name, help, buckets);
    record(def, this.histogramEntry(def, labels), value);
  }

  /** Current value of a counter or gauge series, 0 when absent. */
  value(name: string, labels: Labels = {}): number {
    const def = this.defs.get(name);
    if (!def || def.kind === "histogram") return 0;
    return def.values.get(keyOf(labels))?.value ?? 0;
  }

  /** Sum of a counter over all its series whose labels include `match`. */
  sum(name: string, match: Labels = {}): number {
    const def = this.defs.get(name);
    if (!def || def.kind === "histogram") return 0;
    let total = 0;
    for (const { labels, value } of def.values.values()) {
      if (Object.entries(match).every(([k, v]) => String(labels[k]) === String(v))) total += value;
    }
    return total;
  }

  /** Prometheus text exposition format 0.0.4. */
  render(): string {
    const lines: string[] = [];
    for (const [name, def] of [...this.defs.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      if (def.help) lines.push(`# HELP ${name} ${def.help}`);
      lines.push(`# TYPE ${name} ${def.kind}`);
      if (def.kind === "histogram") {
        for (const v of def.values.values()) {
          let cumulative = 0;
          def.buckets.forEach((b, i) => {
            cumulative += v.counts[i] as number;
            lines.push(`${name}_bucket${renderLabels(v.labels, ["le", String(b)])} ${cumulative}`);
          });
          lines.push(`${name}_bucket${renderLabels(v.labels, ["le", "+Inf"])} ${v.count}`);
          lines.push(`${name}_sum${renderLabels(v.labels)} ${v.sum}`);
          lines.push(`${name}_count${renderLabels(v.labels)} ${v.count}`);
        }
      } else {
        for (const v of def.values.values()) lines.push(`${name}${renderLabels(v.labels)} ${v.value}`);
      }
    }
    return `${lines.join("\n")}\n`;
  }

  /** Forgets everything (tests). */
  reset(): void {
    this.defs.clear();
    this.generation++;
  }

  /** `resolve()` once, and again after each {@link Registry.reset}. */
  private resolved<T>(resolve: () => T): () => T {
    let generation = -1;
    let value: T | undefined;
    return () => {
      if (generation !== this.generation || value === undefined) {
        value = resolve();
        generation = this.generation;
      }
      return value;
    };
  }

  private counterEntry(name: string, labels: Labels, help: string): { labels: Labels; value: number } {
    const values = this.scalar(name, "counter", help).values;
    const k = keyOf(labels);
    let cur = values.get(k);
    if (!cur) {
      cur = { labels, value: 0 };
      values.set(k, cur);
    }
    return cur;
  }

  private histogram(name: string, help: string, buckets: number[]): HistogramDef {
    let def = this.defs.get(name);
    if (!def) {
      def = { kind: "histogram", help, buckets, values: new Map() };
      this.defs.set(name, def);
    }
    if (def.kind !== "histogram") throw new Error(`metric ${name} is not a histogram`);
    return def;
  }

  private histogramEntry(def: HistogramDef, labels: Labels): HistogramEntry {
    const k = keyOf(labels);
    let cur = def.values.get(k);
    if (!cur) {
      cur = { labels, counts: new Array(def.buckets.length).fill(0), sum: 0, count: 0 };
      def.values.set(k, cur);
    }
    return cur;
  }

  private scalar(name: string, kind: "counter" | "gauge", help: string): CounterDef {
    let def = this.defs.get(name);
    if (!def) {
      def = { kind, help, values: new Map() };
      this.defs.set(name, def);
    }
    if (def.kind !== kind) throw new Error(`metric ${name} is a ${def.kind}, not a ${kind}`);
    return def;
  }
}

/** The Worker isolate's registry. */
export const metrics = new Registry();

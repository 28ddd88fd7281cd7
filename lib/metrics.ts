/**
 * In-isolate metrics with Prometheus text exposition.
 *
 * Each isolate keeps its own counters; `/metrics` shows the isolate that answered it (plus the figures
 * the Durable Objects report about themselves). Across isolates, production aggregates through Workers
 * Analytics Engine; see README "Metrics". Label values must come from closed sets (route patterns,
 * status codes), never from user input, so the series count stays bounded.
 */

type Labels = Record<string, string | number>;

/** A metric's declaration: lib/metric-catalog.ts declares each once; dashboards depend on name and labels. */
export interface MetricSpec {
  name: string;
  type: "counter" | "gauge" | "histogram";
  labels: readonly string[];
  help: string;
  /** Histogram bucket bounds (default: milliseconds from 1 to 10,000). */
  buckets?: number[];
}

/** The label values of a metric whose labels are `L`. */
type LabelValues<L extends string> = { readonly [K in L]: string | number };

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

  /** A counter series for a hot path: the series is looked up once instead of on every update. */
  counterSeries(spec: MetricSpec, labels: Labels): CounterSeries {
    const entry = this.resolved(() => this.counterEntry(spec, labels));
    return {
      inc: (by = 1) => {
        if (this.enabled) entry().value += by;
      },
    };
  }

  /** A histogram series for a hot path, looked up once. */
  histogramSeries(spec: MetricSpec, labels: Labels): HistogramSeries {
    const series = this.resolved(() => {
      const def = this.histogram(spec);
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
  inc(spec: MetricSpec, labels: Labels, by = 1): void {
    if (!this.enabled) return;
    this.counterEntry(spec, labels).value += by;
  }

  /** Sets a gauge. */
  set(spec: MetricSpec, labels: Labels, value: number): void {
    if (!this.enabled) return;
    this.scalar(spec, "gauge").values.set(keyOf(labels), { labels, value });
  }

  /** Records one observation in a histogram. */
  observe(spec: MetricSpec, labels: Labels, value: number): void {
    if (!this.enabled) return;
    const def = this.histogram(spec);
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

  private counterEntry(spec: MetricSpec, labels: Labels): { labels: Labels; value: number } {
    const values = this.scalar(spec, "counter").values;
    const k = keyOf(labels);
    let cur = values.get(k);
    if (!cur) {
      cur = { labels, value: 0 };
      values.set(k, cur);
    }
    return cur;
  }

  private histogram(spec: MetricSpec): HistogramDef {
    const name = spec.name;
    let def = this.defs.get(name);
    if (!def) {
      def = { kind: "histogram", help: spec.help, buckets: spec.buckets ?? DEFAULT_BUCKETS_MS, values: new Map() };
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

  private scalar(spec: MetricSpec, kind: "counter" | "gauge"): CounterDef {
    const name = spec.name;
    let def = this.defs.get(name);
    if (!def) {
      def = { kind, help: spec.help, values: new Map() };
      this.defs.set(name, def);
    }
    if (def.kind !== kind) throw new Error(`metric ${name} is a ${def.kind}, not a ${kind}`);
    return def;
  }
}

/** The Worker isolate's registry. */
export const metrics = new Registry();

/** A declared counter: the only way code adds to one (its name, help and labels are its spec's). */
export interface Counter<L extends string> {
  readonly spec: MetricSpec;
  inc(labels: LabelValues<L>, by?: number): void;
  /** One series resolved once, for a hot path (`labels` must not change afterwards). */
  series(labels: LabelValues<L>): CounterSeries;
}

/** A declared gauge. */
export interface Gauge<L extends string> {
  readonly spec: MetricSpec;
  set(labels: LabelValues<L>, value: number): void;
}

/** A declared histogram. */
export interface Histogram<L extends string> {
  readonly spec: MetricSpec;
  observe(labels: LabelValues<L>, value: number): void;
  /** One series resolved once, for a hot path. */
  series(labels: LabelValues<L>): HistogramSeries;
}

type Decl<L extends string> = { name: string; help: string; labels: readonly L[] };

/** Declares a counter in the isolate's registry. */
export const counter = <const L extends string = never>(d: Decl<L>): Counter<L> => {
  const spec: MetricSpec = { ...d, type: "counter" };
  return { spec, inc: (labels, by = 1) => metrics.inc(spec, labels, by), series: (labels) => metrics.counterSeries(spec, labels) };
};

/** Declares a gauge in the isolate's registry. */
export const gauge = <const L extends string = never>(d: Decl<L>): Gauge<L> => {
  const spec: MetricSpec = { ...d, type: "gauge" };
  return { spec, set: (labels, value) => metrics.set(spec, labels, value) };
};

/** Declares a histogram in the isolate's registry. */
export const histogram = <const L extends string = never>(d: Decl<L> & { buckets?: number[] }): Histogram<L> => {
  const spec: MetricSpec = { ...d, type: "histogram" };
  return {
    spec,
    observe: (labels, value) => metrics.observe(spec, labels, value),
    series: (labels) => metrics.histogramSeries(spec, labels),
  };
};

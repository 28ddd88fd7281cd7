/**
 * The drop's report: figures per second from the history (arrivals, admissions, holds, orders, latency,
 * errors by code), the summary (tickets per minute, admission rate, p99 per step) and one self-contained
 * HTML page (inline SVG charts with the fault windows shaded, no scripts, no external files) with the
 * checker's verdict.
 */
import type { Verdict } from "./checker.ts";
import {
  type BacklogRecord,
  type ClientRecord,
  type FaultRecord,
  type History,
  type PhaseRecord,
  type RequestRecord,
  STEPS,
  type Step,
} from "./history.ts";

/** Per-second series. */
export interface Series {
  /** Start of each bin, seconds since the origin. */
  t: number[];
  arrivals: number[];
  admissions: number[];
  holds: number[];
  orders: number[];
  tickets: number[];
  p50: number[];
  p99: number[];
  /** Error answers and lost requests per second, by problem code (or `http_<status>`, or the network error). */
  errors: Record<string, number[]>;
  /** The client's own state each second (ClientRecord): timer lag p99 and max (ms), buyers live and in its backlog, requests waiting for a slot. */
  client: { lagP99: number[]; lagMax: number[]; live: number[]; backlog: number[]; queued: number[] };
}

/** Timer lag at or above this (p99 within a second) means the client, not the server, set the pace that second. */
const CLIENT_LAG_MS = 100;

/** Whether the client kept up, from its own samples and backlog. */
interface ClientFigures {
  /** Seconds sampled, and those whose timer-lag p99 was ≥ CLIENT_LAG_MS. */
  seconds: number;
  laggingSeconds: number;
  /** Median and worst of the per-second timer-lag p99, and the worst single lateness (ms). */
  lagP99Median: number;
  lagP99Max: number;
  lagMax: number;
  /** Buyers that waited in the client's backlog; of them, the sale ended before they started; their wait (s). */
  backlogBuyers: number;
  backlogNeverStarted: number;
  backlogWaitP50: number;
  backlogWaitP99: number;
  backlogMax: number;
  /** Requests that waited for a slot among those in flight, and the p99 of that wait (ms). */
  requestsWaited: number;
  requestWaitP99: number;
  /** Mean CPU used over the sampled seconds, in cores: the drop's process, the server's workerd (null: not measured). */
  clientCores: number;
  serverCores: number | null;
  /** One sentence: did this run measure Breakwater or its own client? */
  verdict: string;
}

/** Latency percentiles of one step (ms). */
interface StepFigures {
  requests: number;
  p50: number;
  p99: number;
  max: number;
  errors: number;
}

/** What a drop measured. */
export interface Summary {
  buyers: number;
  seats: number;
  arrived: number;
  joined: number;
  admitted: number;
  orders: number;
  sold: number;
  /** Tickets sold per minute, from the opening to the last sale. */
  ticketsPerMinute: number;
  /** Buyers admitted per minute, from the opening to the last admission. */
  admittedPerMinute: number;
  /** The event's admission ceiling (waitingRoom.admitPerMinute). */
  admitCeilingPerMinute: number;
  /** Seconds from the opening to the last ticket sold. */
  sellSeconds: number;
  /**
   * The same to the moment 90 % of the tickets were sold, and the rate until then: the last tenth of a
   * sale trickles in as walked-away holds expire and return to sale, which says nothing of throughput.
   */
  sell90Seconds: number;
  ticketsPerMinute90: number;
  requests: number;
  steps: Record<Step, StepFigures>;
  errorsByCode: Record<string, number>;
  outcomes: Record<string, number>;
  faults: { name: string; start: number; end: number; detail?: string }[];
  phases: { name: string; at: number; detail?: string }[];
  /** The drop's client: its lag, its backlog, and whether it kept up. */
  client: ClientFigures;
}

/** The largest of `xs` and `floor` (a loop: Math.max(...xs) overflows the stack past ~100,000 values). */
const maxOf = (xs: Iterable<number>, floor: number): number => {
  let m = floor;
  for (const x of xs) if (x > m) m = x;
  return m;
};
const mean = (xs: number[]) => (xs.length ? Math.round((xs.reduce((a, b) => a + b, 0) / xs.length) * 100) / 100 : 0);
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

const requestsOf = (h: History) => h.records.filter((r): r is RequestRecord => r.kind === "request");
const faultsOf = (h: History) => h.records.filter((r): r is FaultRecord => r.kind === "fault");
const phasesOf = (h: History) => h.records.filter((r): r is PhaseRecord => r.kind === "phase");
const clientOf = (h: History) => h.records.filter((r): r is ClientRecord => r.kind === "client");
const backlogOf = (h: History) => h.records.filter((r): r is BacklogRecord => r.kind === "backlog");

/** The client's figures of a history (see ClientFigures). */
function clientFigures(h: History): ClientFigures {
  const samples = clientOf(h);
  const p99s = samples.map((c) => c.lag.p99).sort((a, b) => a - b);
  const lagging = samples.filter((c) => c.lag.p99 >= CLIENT_LAG_MS).length;
  const backlog = backlogOf(h);
  const waits = backlog.flatMap((b) => (b.started === undefined ? [] : [b.started - b.arrived])).sort((a, b) => a - b);
  const reqWaits = requestsOf(h)
    .flatMap((r) => (r.wait ? [r.wait] : []))
    .sort((a, b) => a - b);
  const f = {
    seconds: samples.length,
    laggingSeconds: lagging,
    lagP99Median: pct(p99s, 0.5),
    lagP99Max: p99s.at(-1) ?? 0,
    lagMax: maxOf(
      samples.map((c) => c.lag.max),
      0,
    ),
    backlogBuyers: backlog.length,
    backlogNeverStarted: backlog.filter((b) => b.started === undefined).length,
    backlogWaitP50: round(pct(waits, 0.5) / 1000),
    backlogWaitP99: round(pct(waits, 0.99) / 1000),
    backlogMax: maxOf(
      samples.map((c) => c.backlog),
      0,
    ),
    requestsWaited: reqWaits.length,
    requestWaitP99: Math.round(pct(reqWaits, 0.99)),
    clientCores: mean(samples.map((c) => c.cpu.client)),
    serverCores: samples.some((c) => c.cpu.server !== undefined)
      ? mean(samples.flatMap((c) => (c.cpu.server === undefined ? [] : [c.cpu.server])))
      : null,
  };
  const lagText =
    lagging === 0
      ? `the client kept up: its timers fired at most ${f.lagP99Max} ms late (p99 per second; worst single ${f.lagMax} ms)`
      : lagging <= Math.max(1, samples.length * 0.05)
        ? `the client kept up but for ${lagging} of ${samples.length} s (timer lag p99 ≥ ${CLIENT_LAG_MS} ms; worst ${f.lagP99Max} ms): figures there include its delay`
        : `CLIENT-BOUND: the client's timers fired ≥ ${CLIENT_LAG_MS} ms late (p99) in ${lagging} of ${samples.length} s (median ${f.lagP99Median} ms, worst ${f.lagP99Max} ms): latencies and rates measure the client as much as Breakwater`;
  const backlogText = f.backlogBuyers
    ? `; ${f.backlogBuyers} buyers waited in the client's backlog (up to ${f.backlogMax} at once; wait p50 ${f.backlogWaitP50} s, p99 ${f.backlogWaitP99} s; ${f.backlogNeverStarted} never started)`
    : "; no buyer waited in the client's backlog";
  const waitText = f.requestsWaited ? `; ${f.requestsWaited} requests waited for a slot on the wire (p99 ${f.requestWaitP99} ms)` : "";
  const cpuText = `; CPU used on average: client ${f.clientCores} cores, server ${f.serverCores ?? "not measured"}${f.serverCores === null ? "" : " cores"}`;
  return { ...f, verdict: lagText + backlogText + waitText + cpuText };
}
const errorKey = (r: RequestRecord) => (r.error ? r.error : r.code ? r.code : `http_${r.status}`);
const isError = (r: RequestRecord) => r.error !== undefined || (r.status !== undefined && r.status >= 400);

/** Per-second series of a history. */
export function series(h: History): Series {
  const reqs = requestsOf(h);
  const end = maxOf(
    reqs.map((r) => r.end),
    1,
  );
  const bins = Math.ceil(end / 1000) + 1;
  const zero = () => new Array<number>(bins).fill(0);
  const s: Series = {
    t: Array.from({ length: bins }, (_, i) => i),
    arrivals: zero(),
    admissions: zero(),
    holds: zero(),
    orders: zero(),
    tickets: zero(),
    p50: zero(),
    p99: zero(),
    errors: {},
    client: { lagP99: zero(), lagMax: zero(), live: zero(), backlog: zero(), queued: zero() },
  };
  const bin = (ms: number) => Math.min(bins - 1, Math.max(0, Math.floor(ms / 1000)));
  const firstOf = new Map<string, number>();
  const admitted = new Set<string>();
  const lat: number[][] = Array.from({ length: bins }, () => []);
  for (const r of reqs) {
    if (!firstOf.has(r.buyer)) firstOf.set(r.buyer, r.start);
    const b = bin(r.end);
    (lat[b] as number[]).push(r.end - r.start);
    if ((r.step === "join" || r.step === "poll") && r.seen?.state === "admitted" && !admitted.has(r.buyer)) {
      admitted.add(r.buyer);
      (s.admissions[b] as number)++;
    }
    if (r.step === "hold" && r.status === 201) (s.holds[b] as number)++;
    if (r.step === "pay" && r.status === 201) {
      (s.orders[b] as number)++;
      s.tickets[b] = (s.tickets[b] as number) + (r.seen?.quantity ?? 0);
    }
    if (isError(r)) {
      const k = errorKey(r);
      if (!s.errors[k]) s.errors[k] = zero();
      (s.errors[k] as number[])[b] = ((s.errors[k] as number[])[b] as number) + 1;
    }
  }
  for (const at of firstOf.values()) (s.arrivals[bin(at)] as number)++;
  for (const c of clientOf(h)) {
    const b = bin(c.at - 1);
    s.client.lagP99[b] = Math.max(s.client.lagP99[b] as number, c.lag.p99);
    s.client.lagMax[b] = Math.max(s.client.lagMax[b] as number, c.lag.max);
    s.client.live[b] = c.live;
    s.client.backlog[b] = c.backlog;
    s.client.queued[b] = c.queued;
  }
  lat.forEach((l, i) => {
    l.sort((a, b) => a - b);
    s.p50[i] = round(pct(l, 0.5));
    s.p99[i] = round(pct(l, 0.99));
  });
  return s;
}

/** The summary of a history (outcomes: how each buyer ended). */
export function summarize(
  h: History,
  opts: { buyers: number; seats: number; admitPerMinute: number; outcomes: Record<string, number>; sold: number; orders: number },
): Summary {
  const reqs = requestsOf(h);
  const steps = {} as Record<Step, StepFigures>;
  for (const step of STEPS) {
    const list = reqs.filter((r) => r.step === step);
    const l = list.map((r) => r.end - r.start).sort((a, b) => a - b);
    steps[step] = {
      requests: list.length,
      p50: round(pct(l, 0.5)),
      p99: round(pct(l, 0.99)),
      max: round(l.at(-1) ?? 0),
      errors: list.filter(isError).length,
    };
  }
  const errorsByCode: Record<string, number> = {};
  for (const r of reqs) if (isError(r)) errorsByCode[errorKey(r)] = (errorsByCode[errorKey(r)] ?? 0) + 1;
  const buyersSeen = new Set(reqs.map((r) => r.buyer));
  const joined = new Set(reqs.filter((r) => r.step === "join" && r.status === 202).map((r) => r.buyer));
  const admittedAt = new Map<string, number>();
  for (const r of reqs)
    if ((r.step === "join" || r.step === "poll") && r.seen?.state === "admitted" && !admittedAt.has(r.buyer))
      admittedAt.set(r.buyer, r.end);
  const sales = reqs.filter((r) => r.step === "pay" && r.status === 201);
  const byEnd = [...sales].sort((a, b) => a.end - b.end);
  const total = byEnd.reduce((a, r) => a + (r.seen?.quantity ?? 0), 0);
  let at90 = h.openAt;
  for (let i = 0, cum = 0; i < byEnd.length; i++) {
    const r = byEnd[i] as RequestRecord;
    cum += r.seen?.quantity ?? 0;
    if (cum >= 0.9 * total) {
      at90 = r.end;
      break;
    }
  }
  const lastSale = maxOf(
    sales.map((r) => r.end),
    h.openAt,
  );
  const lastAdmission = maxOf(admittedAt.values(), h.openAt);
  const minutes = (ms: number) => Math.max(ms, 1_000) / 60_000;
  return {
    buyers: opts.buyers,
    seats: opts.seats,
    arrived: buyersSeen.size,
    joined: joined.size,
    admitted: admittedAt.size,
    orders: opts.orders,
    sold: opts.sold,
    ticketsPerMinute: Math.round(opts.sold / minutes(lastSale - h.openAt)),
    admittedPerMinute: Math.round(admittedAt.size / minutes(lastAdmission - h.openAt)),
    admitCeilingPerMinute: opts.admitPerMinute,
    sellSeconds: round((lastSale - h.openAt) / 1000),
    sell90Seconds: round((at90 - h.openAt) / 1000),
    ticketsPerMinute90: Math.round((0.9 * total) / minutes(at90 - h.openAt)),
    requests: reqs.length,
    steps,
    errorsByCode,
    outcomes: opts.outcomes,
    faults: faultsOf(h).map(({ kind: _k, ...f }) => f),
    phases: phasesOf(h).map(({ kind: _k, ...p }) => p),
    client: clientFigures(h),
  };
}

// ───────────────────────────── HTML ─────────────────────────────

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
const FAULT_COLORS: Record<string, string> = {
  payments: "#f59e0b",
  shard_writes: "#8b5cf6",
  kill: "#ef4444",
  inventory_slow: "#06b6d4",
};

interface Line {
  name: string;
  values: number[];
  color?: string;
}

/** One line chart as inline SVG: x in seconds, fault windows shaded, the opening marked. */
function chart(title: string, id: string, lines: Line[], t: number[], faults: FaultRecord[], openAt: number, unit = ""): string {
  const W = 960;
  const H = 240;
  const m = { l: 56, r: 12, t: 28, b: 30 };
  const xmax = Math.max(1, t.at(-1) ?? 1);
  const ymaxRaw = maxOf(
    lines.flatMap((l) => l.values),
    1,
  );
  const mag = 10 ** Math.floor(Math.log10(ymaxRaw));
  const ymax = Math.ceil(ymaxRaw / mag) * mag;
  const x = (s: number) => m.l + (s / xmax) * (W - m.l - m.r);
  const y = (v: number) => H - m.b - (v / ymax) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg class="chart" id="${id}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`);
  parts.push(`<text x="${m.l}" y="16" class="title">${esc(title)}</text>`);
  for (const f of faults) {
    const x0 = x(f.start / 1000);
    const x1 = Math.max(x0 + 2, x(f.end / 1000));
    parts.push(
      `<rect class="fault" data-fault="${esc(f.name)}" x="${x0.toFixed(1)}" y="${m.t}" width="${(x1 - x0).toFixed(1)}" height="${H - m.t - m.b}" fill="${FAULT_COLORS[f.name] ?? "#999"}" fill-opacity="0.18"><title>${esc(f.name)} ${(f.start / 1000).toFixed(1)}–${(f.end / 1000).toFixed(1)} s</title></rect>`,
    );
    parts.push(`<text x="${(x0 + 3).toFixed(1)}" y="${m.t + 11}" class="flabel">${esc(f.name)}</text>`);
  }
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${m.l - 6}" y="${(y(v) + 4).toFixed(1)}" class="ytick">${round(v, v < 10 ? 1 : 0)}${unit}</text>`);
  }
  const step = xmax > 240 ? 60 : xmax > 60 ? 30 : 10;
  for (let s = 0; s <= xmax; s += step) parts.push(`<text x="${x(s).toFixed(1)}" y="${H - 10}" class="xtick">${s}s</text>`);
  parts.push(`<line x1="${x(openAt / 1000).toFixed(1)}" x2="${x(openAt / 1000).toFixed(1)}" y1="${m.t}" y2="${H - m.b}" class="open"/>`);
  parts.push(`<text x="${(x(openAt / 1000) + 3).toFixed(1)}" y="${H - m.b - 4}" class="flabel">opening</text>`);
  lines.forEach((l, i) => {
    const color = l.color ?? PALETTE[i % PALETTE.length];
    const d = l.values.map((v, k) => `${k ? "L" : "M"}${x(t[k] as number).toFixed(1)},${y(v).toFixed(1)}`).join("");
    parts.push(`<path class="series" data-series="${esc(l.name)}" d="${d}" fill="none" stroke="${color}" stroke-width="1.6"/>`);
    parts.push(`<rect x="${W - m.r - 170}" y="${m.t + 4 + i * 15}" width="10" height="10" fill="${color}"/>`);
    parts.push(`<text x="${W - m.r - 155}" y="${m.t + 13 + i * 15}" class="legend">${esc(l.name)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("");
}

/** The report page. */
export function renderHtml(input: {
  history: History;
  series: Series;
  summary: Summary;
  verdict: Verdict;
  options: Record<string, unknown>;
  seed: number;
}): string {
  const { history: h, series: s, summary: sum, verdict: v } = input;
  const faults = faultsOf(h);
  const topErrors = Object.entries(s.errors)
    .sort((a, b) => b[1].reduce((x, y) => x + y, 0) - a[1].reduce((x, y) => x + y, 0))
    .slice(0, 8)
    .map(([name, values]) => ({ name, values }));
  /** One chart over the run's seconds, fault windows shaded and the opening marked. */
  const over = (title: string, id: string, lines: Line[], unit?: string) => chart(title, id, lines, s.t, faults, h.openAt, unit);
  const line = (name: string, values: number[]): Line => ({ name, values });
  const charts = [
    over("Arrivals and admissions per second", "chart-admission", [line("arrivals/s", s.arrivals), line("admissions/s", s.admissions)]),
    over("Holds, orders and tickets per second", "chart-sales", [
      line("holds/s", s.holds),
      line("orders/s", s.orders),
      line("tickets/s", s.tickets),
    ]),
    over("Latency of the requests ending each second (all steps)", "chart-latency", [line("p50 ms", s.p50), line("p99 ms", s.p99)], ""),
    over("The drop's client: how late its timers fired (ms)", "chart-client-lag", [
      line("timer lag p99 ms", s.client.lagP99),
      line("timer lag max ms", s.client.lagMax),
    ]),
    over("The drop's client: buyers live and in its backlog, requests waiting for a slot", "chart-client-load", [
      line("live buyers", s.client.live),
      line("backlog buyers", s.client.backlog),
      line("requests waiting", s.client.queued),
    ]),
    over(
      "Errors per second by code",
      "chart-errors",
      topErrors.length
        ? topErrors
        : [
            line(
              "no errors",
              s.t.map(() => 0),
            ),
          ],
    ),
  ];
  const row = (cells: (string | number)[], tag = "td") => `<tr>${cells.map((c) => `<${tag}>${esc(String(c))}</${tag}>`).join("")}</tr>`;
  const verdictText = v.ok
    ? "PASS: every invariant held"
    : `FAIL: ${v.violations.length} violation(s) shown, ${Object.values(v.counts).reduce((a, b) => a + (b ?? 0), 0)} in all`;
  const violationHtml = v.violations
    .map(
      (x) =>
        `<details class="violation"><summary><b>${esc(x.rule)}</b>: ${esc(x.message)}</summary><p>buyers: ${esc(x.buyers.join(", ") || "–")}; requests: ${esc(x.requests.map((r) => `#${r}`).join(", ") || "–")}; X-Request-Id: ${esc(x.requestIds.join(", ") || "–")}</p><pre>${esc(x.timeline.join("\n"))}</pre></details>`,
    )
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Breakwater drop report</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#111;max-width:1000px}
h1{font-size:22px;margin:0 0 4px}
.verdict{padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}
.pass{background:#dcfce7;color:#14532d}.fail{background:#fee2e2;color:#7f1d1d}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f3f4f6}
td:first-child,th:first-child{text-align:left}
svg.chart{display:block;margin:10px 0;background:#fff;border:1px solid #e5e7eb}
.title{font-weight:600;font-size:13px}.grid{stroke:#eee}.ytick{font-size:10px;text-anchor:end;fill:#555}.xtick{font-size:10px;text-anchor:middle;fill:#555}
.legend,.flabel{font-size:10px;fill:#333}.open{stroke:#111;stroke-dasharray:4 3}
pre{font-size:11px;background:#f9fafb;padding:8px;overflow:auto}
</style></head><body>
<h1>Breakwater drop report</h1>
<p>${esc(new Date(h.origin).toISOString())} · event ${esc(h.eventId)} · seed ${input.seed} · ${sum.buyers} buyers, ${sum.seats} seats · faults: ${esc(sum.faults.map((f) => f.name).join(", ") || "none")}</p>
<div class="verdict ${v.ok ? "pass" : "fail"}" id="verdict">${esc(verdictText)}</div>
<table id="summary">
${row(["sold", "orders", "tickets / min", "tickets / min to 90 %", "admitted / min", "admission ceiling / min", "seconds to sell (90 %)", "admitted", "joined", "requests"], "th")}
${row([sum.sold, sum.orders, sum.ticketsPerMinute, sum.ticketsPerMinute90, sum.admittedPerMinute, sum.admitCeilingPerMinute, `${sum.sellSeconds} (${sum.sell90Seconds})`, sum.admitted, sum.joined, sum.requests])}
</table>
<p id="client-verdict">Client: ${esc(sum.client.verdict)}.</p>
${charts.join("\n")}
<h2>Latency per step (ms)</h2>
<table id="steps">${row(["step", "requests", "p50", "p99", "max", "errors"], "th")}${STEPS.map((st) => row([st, sum.steps[st].requests, sum.steps[st].p50, sum.steps[st].p99, sum.steps[st].max, sum.steps[st].errors])).join("")}</table>
<h2>Faults</h2>
<table id="faults">${row(["fault", "from (s)", "to (s)", "detail"], "th")}${sum.faults.map((f) => row([f.name, round(f.start / 1000), round(f.end / 1000), f.detail ?? ""])).join("")}</table>
<h2>Errors by code</h2>
<table>${row(["code", "count"], "th")}${Object.entries(sum.errorsByCode)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => row([k, n]))
    .join("")}</table>
<h2>Buyers by outcome</h2>
<table>${row(["outcome", "buyers"], "th")}${Object.entries(sum.outcomes)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => row([k, n]))
    .join("")}</table>
<h2>Checker</h2>
<p>Admission order after the opening: ${round(v.admission.afterOpen.concordance * 100, 1)} % in join order of ${v.admission.afterOpen.pairs} pairs whose order is known both ways; Spearman ρ = ${round(v.admission.afterOpen.rho, 3)} over ${v.admission.afterOpen.n} buyers (${v.admission.afterOpen.wide} more not ranked: they learned of their admission over 30 s after their last "waiting" answer); pre-queue (shuffled once): ρ = ${round(v.admission.preSale.rho, 3)} over ${v.admission.preSale.n}.</p>
${violationHtml || "<p>No violations.</p>"}
<h2>Options</h2><pre>${esc(JSON.stringify(input.options, null, 2))}</pre>
</body></html>
`;
}

// Breakwater operations page: polls /metrics (Prometheus text) every second and draws the live figures.
const POLL_MS = 1000;
const KEEP = 300; // samples kept (5 minutes)
const $ = (id) => document.getElementById(id);
const history = { rps: [], p50: [], p95: [], p99: [], holds: [], orders: [], hit: [] };
let previous = null;
let samples = 0;

/** Parses Prometheus text exposition into [{ name, labels, value }]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) for (const p of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

const sum = (rows, name, pred = () => true) => rows.filter((r) => r.name === name && pred(r.labels)).reduce((a, r) => a + r.value, 0);

/** Quantile from the bucket deltas of a histogram between two scrapes. */
function quantile(cur, prev, name, q, pred = () => true) {
  const buckets = new Map();
  for (const r of cur)
    if (r.name === `${name}_bucket` && pred(r.labels)) buckets.set(r.labels.le, (buckets.get(r.labels.le) ?? 0) + r.value);
  for (const r of prev)
    if (r.name === `${name}_bucket` && pred(r.labels)) buckets.set(r.labels.le, (buckets.get(r.labels.le) ?? 0) - r.value);
  const sorted = [...buckets.entries()].map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n]).sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total <= 0) return null;
  const target = q * total;
  for (const [le, n] of sorted) if (n >= target) return le;
  return null;
}

async function token() {
  let t = localStorage.getItem("breakwater-admin-token");
  if (t) return t;
  const res = await fetch("/v1/auth/dev-token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub: "ops-page", role: "admin" }),
  });
  if (res.ok) {
    t = (await res.json()).token;
    localStorage.setItem("breakwater-admin-token", t);
    return t;
  }
  $("auth").hidden = false;
  return null;
}

function draw(canvas, series, max) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const top = Math.max(max ?? 0, ...series.flatMap((s) => s.data.filter((v) => v != null && Number.isFinite(v))), 1);
  ctx.strokeStyle = "#30363d";
  ctx.beginPath();
  ctx.moveTo(0, h - 0.5);
  ctx.lineTo(w, h - 0.5);
  ctx.stroke();
  ctx.fillStyle = "#8b949e";
  ctx.font = "11px system-ui";
  ctx.fillText(top.toFixed(top < 10 ? 1 : 0), 4, 12);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.data.forEach((v, i) => {
      if (v == null || !Number.isFinite(v)) return;
      const x = (i / (KEEP - 1)) * w;
      const y = h - (v / top) * (h - 16) - 1;
      i === 0 || s.data[i - 1] == null ? ctx.moveTo(x, y) : ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

const push = (k, v) => {
  history[k].push(v);
  if (history[k].length > KEEP) history[k].shift();
};
const fmt = (v, digits = 0) => (v == null || !Number.isFinite(v) ? "–" : v.toFixed(digits));

function render(cur, prev, seconds) {
  const rate = (name, pred) => Math.max(0, (sum(cur, name, pred) - sum(prev, name, pred)) / seconds);
  const rps = rate("breakwater_http_requests_total");
  const errors = rate("breakwater_http_requests_total", (l) => Number(l.status) >= 500);
  const p50 = quantile(cur, prev, "breakwater_http_request_duration_ms", 0.5);
  const p95 = quantile(cur, prev, "breakwater_http_request_duration_ms", 0.95);
  const p99 = quantile(cur, prev, "breakwater_http_request_duration_ms", 0.99);
  const hits = rate("breakwater_cache_lookups_total", (l) => ["micro", "validated", "coalesced", "edge"].includes(l.layer));
  const lookups = rate("breakwater_cache_lookups_total");
  const hit = lookups > 0 ? (100 * hits) / lookups : null;
  const holds = rate("breakwater_holds_total", (l) => l.result === "created");
  const orders = rate("breakwater_checkouts_total", (l) => l.result === "paid");
  const breaker = cur.find((r) => r.name === "breakwater_breaker_state");
  $("rps").textContent = fmt(rps);
  $("errors").textContent = fmt(errors, 1);
  $("p99").textContent = p99 == null ? "–" : `${p99 === Infinity ? ">10000" : p99} ms`;
  $("hit-ratio").textContent = hit == null ? "–" : `${hit.toFixed(1)} %`;
  $("holds").textContent = fmt(holds, 1);
  $("orders").textContent = fmt(orders, 1);
  $("breaker").textContent = breaker ? ["closed", "half-open", "open"][breaker.value] : "closed";
  $("overloads").textContent = fmt(rate("breakwater_do_overloads_total"), 1);
  $("queue-sends").textContent = fmt(
    rate("breakwater_queue_messages_total", (l) => l.action === "sent"),
    1,
  );
  $("dead-letters").textContent = fmt(sum(cur, "breakwater_queue_messages_total", (l) => l.action === "dead_lettered"));
  const adm = cur.find((r) => r.name === "breakwater_admission_rate_per_minute");
  $("admission").textContent = adm ? fmt(adm.value) : "–";
  push("rps", rps);
  push("p50", p50 === Infinity ? null : p50);
  push("p95", p95 === Infinity ? null : p95);
  push("p99", p99 === Infinity ? null : p99);
  push("holds", holds);
  push("orders", orders);
  push("hit", hit);
  draw($("chart-rps"), [{ data: history.rps, color: "#58a6ff" }]);
  draw($("chart-latency"), [
    { data: history.p50, color: "#3fb950" },
    { data: history.p95, color: "#d29922" },
    { data: history.p99, color: "#f85149" },
  ]);
  draw($("chart-sales"), [
    { data: history.holds, color: "#a371f7" },
    { data: history.orders, color: "#3fb950" },
  ]);
  draw($("chart-cache"), [{ data: history.hit, color: "#58a6ff" }], 100);

  const routes = new Set(cur.filter((r) => r.name === "breakwater_http_requests_total").map((r) => r.labels.route));
  const body = $("routes").tBodies[0];
  body.textContent = "";
  for (const route of [...routes].sort()) {
    const tr = document.createElement("tr");
    const r = rate("breakwater_http_requests_total", (l) => l.route === route);
    const e = rate("breakwater_http_requests_total", (l) => l.route === route && Number(l.status) >= 500);
    const q = quantile(cur, prev, "breakwater_http_request_duration_ms", 0.99, (l) => l.route === route);
    for (const v of [route, fmt(r, 1), q == null ? "–" : String(q), fmt(e, 1)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function poll() {
  const t = await token();
  if (!t) return;
  try {
    const res = await fetch("/metrics", { headers: { Authorization: `Bearer ${t}` }, cache: "no-store" });
    if (res.status === 401 || res.status === 403) {
      localStorage.removeItem("breakwater-admin-token");
      $("status").textContent = "token refused";
      $("status").className = "err";
      return;
    }
    const now = performance.now();
    const rows = parseMetrics(await res.text());
    if (previous) render(rows, previous.rows, (now - previous.at) / 1000);
    previous = { rows, at: now };
    samples++;
    $("samples").textContent = String(samples);
    $("status").textContent = `live · ${new Date().toLocaleTimeString()}`;
    $("status").className = "ok";
  } catch (err) {
    $("status").textContent = `metrics unavailable: ${err}`;
    $("status").className = "err";
  }
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem("breakwater-admin-token", $("token").value.trim());
  $("auth").hidden = true;
});
setInterval(poll, POLL_MS);
poll();

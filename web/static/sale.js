// Live sale: the organizer's stats API (sold / held / available, revenue, orders per minute, the funnel)
// and the public availability snapshot, every 2 s while the page is visible. Waiting-room length is
// joined − admitted; the admission rate is the change of `admitted` between two polls, per minute.
import { api, money, pageData, problemText, requireToken, setText } from "./bw.js";

const { eventId, currency } = pageData();
const token = requireToken("organizer");
const fmt = new Intl.NumberFormat();
let last;

function showStats(s, at) {
  setText("sold", fmt.format(s.sold));
  setText("held", fmt.format(s.held));
  setText("available", fmt.format(s.available));
  setText("revenue", money(s.revenue, s.currency || currency));
  const total = s.sold + s.held + s.available || 1;
  document.getElementById("bar-sold").style.width = `${(100 * s.sold) / total}%`;
  document.getElementById("bar-held").style.width = `${(100 * s.held) / total}%`;
  const f = s.funnel;
  const top = Math.max(1, f.joined, f.admitted, f.held, f.paid);
  for (const li of document.querySelectorAll("#funnel li")) {
    const v = f[li.dataset.step] ?? 0;
    li.querySelector(".funnel-fill").style.width = `${(100 * v) / top}%`;
    li.querySelector(".funnel-value").textContent = fmt.format(v);
  }
  setText("room-length", fmt.format(Math.max(0, f.joined - f.admitted)));
  if (last && at > last.at) {
    const perMin = ((f.admitted - last.admitted) * 60_000) / (at - last.at);
    setText("room-rate", `${fmt.format(Math.max(0, Math.round(perMin)))}/min`);
  }
  last = { at, admitted: f.admitted };
  const minutes = s.ordersPerMinute.slice(-30);
  setText("opm-now", minutes.length ? fmt.format(minutes[minutes.length - 1].orders) : "0");
  const peak = Math.max(1, ...minutes.map((m) => m.orders));
  const spark = document.getElementById("opm");
  spark.replaceChildren(
    ...minutes.map((m) => {
      const bar = document.createElement("span");
      bar.style.height = `${(100 * m.orders) / peak}%`;
      bar.title = `${m.minute}: ${m.orders}`;
      return bar;
    }),
  );
}

function showSections(snapshot) {
  for (const s of snapshot.sections) {
    const row = document.querySelector(`tr[data-section="${s.id}"]`);
    if (!row) continue;
    for (const k of ["sold", "held", "available"]) row.querySelector(`[data-col="${k}"]`).textContent = fmt.format(s[k]);
  }
}

async function tick() {
  const [stats, avail] = await Promise.all([api(`/v1/events/${eventId}/stats`, { token }), api(`/v1/events/${eventId}/availability`)]);
  const at = Date.now();
  if (stats.ok) showStats(stats.data, at);
  if (avail.ok) showSections(avail.data);
  setText("sale-status", stats.ok ? `Live · updated ${new Date(at).toLocaleTimeString()}` : `Stats unavailable: ${problemText(stats)}`);
  setTimeout(tick, document.hidden ? 10_000 : 2_000);
}

if (token) tick();

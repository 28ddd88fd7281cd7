// Event page: live availability per section from the public, cached availability API (every 2 s while
// the page is visible; the snapshot itself lags the truth by about a second).
import { api, pageData, setText } from "./bw.js";

const { eventId } = pageData();

/** Writes one snapshot into the table. */
function show(snapshot) {
  for (const s of snapshot.sections) {
    const text = document.querySelector(`[data-avail="${s.id}"]`);
    const meter = document.querySelector(`[data-meter="${s.id}"]`);
    if (text)
      text.textContent =
        s.available === 0 ? (s.held > 0 ? "None free now (some on hold)" : "Sold out") : `${s.available} of ${s.capacity} left`;
    if (meter) meter.style.width = `${s.capacity ? (100 * s.available) / s.capacity : 0}%`;
  }
  setText("asof", `Availability as of ${new Date(snapshot.asOf).toLocaleTimeString()}.`);
}

async function tick() {
  const r = await api(`/v1/events/${eventId}/availability`);
  if (r.ok) show(r.data);
  else setText("asof", "Availability is not available right now; retrying.");
  setTimeout(tick, document.hidden ? 10_000 : 2_000);
}
tick();

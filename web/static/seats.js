// Section page: the seat map (seated) or the quantity picker (GA), then the hold. Seat states come from the
// public seat-map API (cached a second), refreshed every 3 s; the map is keyboard-operable: one tab stop,
// arrow keys move between seats (roving tabindex), Space or Enter picks.
import { api, claimsOf, money, pageData, problemText, requireToken, setText } from "./bw.js";

const data = pageData();
const { eventId, sectionId, kind, currency } = data;
const price = Number(data.price);
const limit = Number(data.limit);
const token = requireToken("buyer");
const user = token && claimsOf(token).sub;
const map = document.getElementById("seatmap");
const picked = new Set();

/** The queue pass for this event and buyer when the event has a waiting room (else off to the queue). */
function queuePass() {
  if (data.waitingRoom !== "true") return null;
  try {
    const kept = JSON.parse(localStorage.getItem(`bw.pass.${eventId}`) || "null");
    if (kept && kept.user === user && (!kept.expiresAt || Date.parse(kept.expiresAt) > Date.now())) return kept.pass;
  } catch {}
  location.replace(`/events/${eventId}/queue?section=${sectionId}`);
  return undefined;
}
const pass = token ? queuePass() : undefined;

const seatButtons = () => (map ? [...map.querySelectorAll("button.seat")] : []);

function summary() {
  if (kind === "ga") {
    const q = Number(document.getElementById("quantity").value) || 0;
    setText("hold-summary", q > 0 ? `${q} × ${money(price, currency)} = ${money(q * price, currency)}` : "");
    return;
  }
  const n = picked.size;
  const names = [...picked].map((id) => {
    const b = map.querySelector(`[data-seat="${CSS.escape(id)}"]`);
    return `row ${b.dataset.row} seat ${b.dataset.number}`;
  });
  setText("hold-summary", n ? `${n} picked (${names.join(", ")}): ${money(n * price, currency)}` : "No seats picked yet.");
}

/** Marks every seat with its state from the seat-map API; drops picks someone else took meanwhile. */
async function refreshSeats() {
  const r = await api(`/v1/events/${eventId}/sections/${sectionId}/seats`);
  if (!r.ok) return;
  let lost = 0;
  const byId = new Map(r.data.seats.map((s) => [`${s.row}-${s.number}`, s.status]));
  let free = 0;
  for (const b of seatButtons()) {
    const status = byId.get(`${b.dataset.row}-${b.dataset.number}`) || "available";
    const taken = status !== "available";
    if (!taken) free++;
    b.classList.toggle("held", status === "held");
    b.classList.toggle("sold", status === "sold");
    const label = `Row ${b.dataset.row}, seat ${b.dataset.number}${taken ? `, ${status}` : ""}`;
    if (b.getAttribute("aria-label") !== label) b.setAttribute("aria-label", label);
    if (taken) {
      b.setAttribute("aria-disabled", "true");
      if (picked.delete(b.dataset.seat)) {
        b.setAttribute("aria-pressed", "false");
        lost++;
      }
    } else b.removeAttribute("aria-disabled");
  }
  setText("section-avail", `${free} seats free`);
  if (lost) {
    setText("hold-error", `${lost} of your picked seats ${lost === 1 ? "was" : "were"} just taken.`);
    summary();
  }
}

function toggle(b) {
  if (b.getAttribute("aria-disabled") === "true") return;
  const id = b.dataset.seat;
  if (picked.has(id)) picked.delete(id);
  else if (picked.size >= limit) {
    setText("hold-error", `You can pick up to ${limit} seats.`);
    return;
  } else picked.add(id);
  setText("hold-error", "");
  b.setAttribute("aria-pressed", picked.has(id) ? "true" : "false");
  summary();
}

/** Arrow keys move the single tab stop across the grid of seats. */
function onKey(e) {
  const b = e.target.closest("button.seat");
  if (!b) return;
  const rows = [...map.querySelectorAll(".seat-row")];
  const r = Number(b.closest(".seat-row").dataset.rowIndex);
  const inRow = [...rows[r].querySelectorAll("button.seat")];
  const i = inRow.indexOf(b);
  let target;
  if (e.key === "ArrowRight") target = inRow[i + 1];
  else if (e.key === "ArrowLeft") target = inRow[i - 1];
  else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    const row = rows[r + (e.key === "ArrowDown" ? 1 : -1)];
    if (row) {
      const seats = row.querySelectorAll("button.seat");
      target = seats[Math.min(i, seats.length - 1)];
    }
  } else if (e.key === "Home") target = inRow[0];
  else if (e.key === "End") target = inRow[inRow.length - 1];
  else return;
  e.preventDefault();
  if (!target) return;
  b.tabIndex = -1;
  target.tabIndex = 0;
  target.focus();
}

async function refreshGa() {
  const r = await api(`/v1/events/${eventId}/availability`);
  const s = r.ok && r.data.sections.find((x) => x.id === sectionId);
  if (s) setText("section-avail", s.available ? `${s.available} left` : "none free right now");
}

async function hold(e) {
  e.preventDefault();
  const button = document.getElementById("hold-button");
  const body = { sectionId };
  if (kind === "ga") {
    const q = Number(document.getElementById("quantity").value);
    if (!Number.isInteger(q) || q < 1 || q > limit) {
      setText("hold-error", `Choose between 1 and ${limit} tickets.`);
      return;
    }
    body.quantity = q;
  } else {
    if (picked.size === 0) {
      setText("hold-error", "Pick at least one seat first.");
      return;
    }
    body.seats = [...picked];
  }
  button.disabled = true;
  setText("hold-error", "");
  const headers = { "Idempotency-Key": crypto.randomUUID() };
  if (pass) headers["X-Queue-Pass"] = pass;
  const r = await api(`/v1/events/${eventId}/holds`, { method: "POST", token, body, headers });
  button.disabled = false;
  if (r.ok) {
    location.assign(`/checkout/${encodeURIComponent(r.data.hold.id)}`);
    return;
  }
  const code = r.data?.code;
  if (code === "not_admitted") {
    localStorage.removeItem(`bw.pass.${eventId}`);
    location.replace(`/events/${eventId}/queue?section=${sectionId}`);
    return;
  }
  setText("hold-error", problemText(r));
  if (code === "seats_unavailable" && kind === "seated") refreshSeats();
}

if (token && pass !== undefined) {
  document.getElementById("hold-form").addEventListener("submit", hold);
  if (kind === "seated") {
    map.addEventListener("click", (e) => {
      const b = e.target.closest("button.seat");
      if (b) toggle(b);
    });
    map.addEventListener("keydown", onKey);
    const poll = async () => {
      await refreshSeats();
      setTimeout(poll, document.hidden ? 10_000 : 3_000);
    };
    poll();
  } else {
    document.getElementById("quantity").addEventListener("input", summary);
    summary();
    const poll = async () => {
      await refreshGa();
      setTimeout(poll, document.hidden ? 10_000 : 3_000);
    };
    poll();
  }
}

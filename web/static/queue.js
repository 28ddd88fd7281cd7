// Queue page: joins the event's waiting room, polls at the interval the server advises, keeps the place
// across reloads (the signed ticket is kept in localStorage), and goes straight to the seats once admitted.
import { api, claimsOf, pageData, problemText, requireToken, setText, waitText } from "./bw.js";

const { eventId, saleStartsAt, firstSection } = pageData();
const token = requireToken("buyer");
const user = token && claimsOf(token).sub;
const KEY = `bw.queue.${eventId}`;
const opensAt = Date.parse(saleStartsAt);

/** Where to go once admitted: the section the buyer chose on the event page, else the first. */
const wanted = new URLSearchParams(location.search).get("section");
if (wanted && /^[A-Za-z0-9_-]{1,32}$/.test(wanted)) localStorage.setItem(`bw.next.${eventId}`, wanted);
const nextSection = () => localStorage.getItem(`bw.next.${eventId}`) || firstSection;

/** The kept place: { user, ticket, first } (first: the position at the first poll after the opening). */
function kept() {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || "null");
    return v && v.user === user ? v : null;
  } catch {
    return null;
  }
}
const keep = (v) => localStorage.setItem(KEY, JSON.stringify({ ...v, user }));

function setProgress(percent) {
  const p = Math.max(0, Math.min(100, Math.round(percent)));
  document.getElementById("queue-fill").style.width = `${p}%`;
  document.getElementById("queue-progress").setAttribute("aria-valuenow", String(p));
}

/** Shows a queue status and keeps its ticket; returns the seconds until the next poll, or null to stop. */
function show(status) {
  const place = kept() || {};
  const open = Date.now() >= opensAt;
  if (open && status.state === "waiting" && !(place.first >= status.position)) place.first = Math.max(1, status.position);
  keep({ ...place, ticket: status.ticket });
  setText("queue-error", "");
  if (status.state === "admitted" && status.pass) {
    localStorage.setItem(`bw.pass.${eventId}`, JSON.stringify({ user, pass: status.pass, expiresAt: status.passExpiresAt }));
    setText("queue-status", "It is your turn: taking you to the seats…");
    setProgress(100);
    location.replace(`/events/${eventId}/sections/${nextSection()}`);
    return null;
  }
  if (status.soldOut) {
    setText("queue-status", "Sold out: nobody else will be admitted.");
    return null;
  }
  if (!open) {
    setText("queue-status", "You are in. The sale has not opened yet.");
    setText("queue-position", `${status.position} in the queue`);
    setText("queue-wait", `opens in ${waitText((opensAt - Date.now()) / 1000)}`);
    setProgress(0);
  } else {
    setText("queue-status", status.position === 0 ? "Almost there…" : "You are in the queue.");
    setText("queue-position", String(status.position));
    setText("queue-wait", waitText(status.estimatedWaitSeconds));
    setProgress(place.first ? (100 * (place.first - status.position)) / place.first : 0);
  }
  return status.pollAfterSeconds;
}

/** Joins (or re-joins with the kept ticket) and returns the status, or a failed call. */
async function join() {
  const ticket = kept()?.ticket;
  return api(`/v1/events/${eventId}/queue`, { method: "POST", token, headers: ticket ? { "X-Queue-Ticket": ticket } : {} });
}

async function step() {
  const ticket = kept()?.ticket;
  let r = ticket ? await api(`/v1/events/${eventId}/queue`, { token, headers: { "X-Queue-Ticket": ticket } }) : await join();
  if (!r.ok && (r.status === 403 || r.status === 400) && ticket) {
    // The kept ticket is expired or not this buyer's: queue again.
    localStorage.removeItem(KEY);
    r = await join();
  }
  if (r.status === 401) {
    requireToken("buyer");
    return;
  }
  let wait;
  if (r.ok) {
    wait = show(r.data);
    if (wait === null) return;
  } else {
    setText("queue-error", `${problemText(r)} Retrying…`);
    wait = Number(r.headers.get("Retry-After")) || 5;
  }
  // Before the opening, poll again right at it as well as at the advised interval.
  const untilOpen = (opensAt - Date.now()) / 1000;
  if (untilOpen > 0) wait = Math.min(wait, untilOpen + 0.2);
  setTimeout(step, Math.min(60, Math.max(1, wait)) * 1000);
}

if (token) step();

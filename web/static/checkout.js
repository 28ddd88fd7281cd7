// Checkout: the hold's countdown (announced to screen readers each minute, and at 30 s) and payment
// through the API (sandbox tokens locally). A declined card keeps the hold; an expired hold says so.
import { api, clock, money, problemText, requireToken, setText } from "./bw.js";

const holdId = decodeURIComponent(location.pathname.split("/").pop());
const token = requireToken("buyer");
let hold;
let timer;

function describe(h) {
  const what = h.seats.length
    ? `${h.seats.length} seat${h.seats.length === 1 ? "" : "s"} (${h.seats.join(", ")})`
    : `${h.quantity} ticket${h.quantity === 1 ? "" : "s"}`;
  setText("hold-desc", `${what} in section ${h.sectionId}: ${money(h.total, h.currency)}.`);
  setText("pay-button", `Pay ${money(h.total, h.currency)}`);
}

function tick() {
  const left = (Date.parse(hold.expiresAt) - Date.now()) / 1000;
  setText("countdown", clock(left));
  const whole = Math.ceil(left);
  if (whole > 0 && (whole % 60 === 0 || whole === 30)) setText("countdown-sr", `${clock(whole)} left to pay.`);
  const total = Math.max(1, (Date.parse(hold.expiresAt) - loadedAt) / 1000);
  document.getElementById("countdown-fill").style.width = `${Math.max(0, Math.min(100, (100 * left) / total))}%`;
  if (left <= 0) {
    clearInterval(timer);
    ended("Your hold has expired and the places went back on sale.");
  }
}
const loadedAt = Date.now();

function ended(message) {
  setText("pay-error", message);
  document.getElementById("pay-button").disabled = true;
  document.getElementById("release-button").hidden = true;
  const back = document.createElement("a");
  back.href = `/events/${hold.eventId}`;
  back.textContent = "Back to the event";
  document.getElementById("pay-error").after(back);
}

async function load() {
  const r = await api(`/v1/holds/${encodeURIComponent(holdId)}`, { token });
  if (!r.ok) {
    setText("hold-desc", problemText(r));
    document.getElementById("pay-button").disabled = true;
    return;
  }
  hold = r.data.hold;
  describe(hold);
  if (hold.status === "sold" && hold.orderId) {
    location.replace(`/orders/${encodeURIComponent(hold.orderId)}`);
    return;
  }
  if (hold.status === "expired" || hold.status === "released") {
    ended(`This hold is ${hold.status}.`);
    return;
  }
  tick();
  timer = setInterval(tick, 1000);
}

async function pay(e) {
  e.preventDefault();
  if (!hold) return;
  const button = document.getElementById("pay-button");
  button.disabled = true;
  setText("pay-error", "");
  setText("countdown-sr", "Paying…");
  const payment = { method: "sandbox", token: new FormData(e.target).get("token") };
  const r = await api("/v1/orders", {
    method: "POST",
    token,
    body: { holdId: hold.id, payment },
    headers: { "Idempotency-Key": crypto.randomUUID() },
  });
  if (r.ok) {
    clearInterval(timer);
    sessionStorage.setItem(`bw.order.${r.data.order.id}`, JSON.stringify(r.data.order));
    location.assign(`/orders/${encodeURIComponent(r.data.order.id)}`);
    return;
  }
  if (r.data?.code === "hold_expired") {
    clearInterval(timer);
    ended(problemText(r));
    return;
  }
  button.disabled = false;
  setText(
    "pay-error",
    r.data?.code === "payment_declined" ? "The card was declined. Your places are still held: try another card." : problemText(r),
  );
}

async function release() {
  if (!hold) return;
  const r = await api(`/v1/holds/${encodeURIComponent(hold.id)}`, { method: "DELETE", token });
  if (r.ok || r.status === 204) {
    clearInterval(timer);
    location.assign(`/events/${hold.eventId}`);
  } else setText("pay-error", problemText(r));
}

if (token) {
  document.getElementById("pay-form").addEventListener("submit", pay);
  document.getElementById("release-button").addEventListener("click", release);
  load();
}

// After the sale, on the organizer's live page: check a ticket in by its code, download the check-in
// list, refund an order (whole or some tickets), cancel the event. Each form shows the API's answer,
// problem documents included, next to it; the cancellation's progress comes from the stats the live page
// already polls.
import { api, pageData, problemText, requireToken, setText } from "./bw.js";

const { eventId } = pageData();
const token = requireToken("organizer");
const when = (iso) => new Date(iso).toLocaleTimeString();
/** One Idempotency-Key per submitted form: a retried click replays the first answer. */
const newKey = () => crypto.randomUUID();

function on(formId, handler) {
  const form = document.getElementById(formId);
  if (!form) return;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await handler(form);
    } finally {
      button.disabled = false;
    }
  });
}

on("checkin-form", async (form) => {
  const input = form.querySelector("#checkin-code");
  const code = input.value.trim();
  if (!code) {
    input.setAttribute("aria-invalid", "true");
    setText("checkin-result", "Scan or paste a ticket code.");
    return;
  }
  input.removeAttribute("aria-invalid");
  const r = await api(`/v1/events/${eventId}/check-ins`, { method: "POST", token, body: { code } });
  if (r.ok) setText("checkin-result", `Checked in: ${r.data.ticket.seat} (${r.data.ticket.id}) at ${when(r.data.checkedInAt)}.`);
  else if (r.status === 409) setText("checkin-result", `Already checked in at ${when(r.data.checkedInAt)}: do not admit twice.`);
  else if (r.status === 410) setText("checkin-result", "Refunded ticket: not valid.");
  else if (r.status === 404) setText("checkin-result", "No ticket of this event has that code.");
  else setText("checkin-result", problemText(r));
  input.select();
});

document.getElementById("checkin-csv")?.addEventListener("click", async () => {
  setText("checkin-csv-status", "Preparing…");
  let res;
  try {
    res = await fetch(`/v1/events/${eventId}/check-ins.csv`, { headers: { Authorization: `Bearer ${token}` } });
  } catch (err) {
    setText("checkin-csv-status", `Download failed: ${err}`);
    return;
  }
  if (!res.ok) {
    setText("checkin-csv-status", `Download failed (${res.status}).`);
    return;
  }
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = `check-ins-${eventId}.csv`;
  document.body.append(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
  setText("checkin-csv-status", "Downloaded.");
});

on("refund-form", async (form) => {
  const orderInput = form.querySelector("#refund-order");
  const orderId = orderInput.value.trim();
  if (!orderId) {
    orderInput.setAttribute("aria-invalid", "true");
    setText("refund-result", "Enter the order id.");
    return;
  }
  orderInput.removeAttribute("aria-invalid");
  const tickets = form
    .querySelector("#refund-tickets")
    .value.split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  const reason = form.querySelector("#refund-reason").value.trim();
  const body = { ...(tickets.length ? { tickets } : {}), ...(reason ? { reason } : {}) };
  const r = await api(`/v1/orders/${encodeURIComponent(orderId)}/refund`, {
    method: "POST",
    token,
    body,
    headers: { "Idempotency-Key": newKey() },
  });
  if (r.ok) {
    const o = r.data.order;
    const voided = o.tickets.filter((t) => t.status === "void").length;
    setText("refund-result", `Order ${o.status.replace("_", " ")}: ${voided} of ${o.tickets.length} ticket(s) void, seats back on sale.`);
  } else setText("refund-result", problemText(r));
});

on("cancel-form", async (form) => {
  if (!form.querySelector("#cancel-confirm").checked) {
    setText("cancel-result", "Tick the box to confirm.");
    return;
  }
  const r = await api(`/v1/events/${eventId}/cancel`, { method: "POST", token });
  setText(
    "cancel-result",
    r.ok ? "Cancelled: sales are stopped; paid orders are being refunded (progress below as it happens)." : problemText(r),
  );
  if (r.ok) progress();
});

/** The cancellation's refunds, from the stats, until every order is refunded. */
async function progress() {
  const r = await api(`/v1/events/${eventId}/stats`, { token });
  const c = r.ok ? r.data.cancellation : undefined;
  if (c) setText("cancel-result", `Cancelled: ${c.refunded} of ${c.orders} order(s) refunded.`);
  if (!c || c.refunded < c.orders) setTimeout(progress, 2_000);
}
if (token) {
  api(`/v1/events/${eventId}/stats`, { token }).then((r) => {
    if (r.ok && r.data.cancellation) progress();
  });
}

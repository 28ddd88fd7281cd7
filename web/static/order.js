// Confirmation: the order and its tickets. Each ticket's QR code comes from GET /v1/tickets/:id/qr.svg
// (fetched with the buyer's token, shown from a blob); where the API does not serve it, the code alone.
import { api, money, problemText, requireToken, setText } from "./bw.js";

const orderId = decodeURIComponent(location.pathname.split("/").pop());
const token = requireToken("buyer");

/** Fetches a ticket's QR code into `slot`; leaves the slot empty when the API has none. */
async function showQr(ticket, slot) {
  let res;
  try {
    res = await fetch(`/v1/tickets/${encodeURIComponent(ticket.id)}/qr.svg`, { headers: { Authorization: `Bearer ${token}` } });
  } catch {
    return;
  }
  if (!res.ok || !(res.headers.get("Content-Type") || "").includes("svg")) return;
  const img = document.createElement("img");
  img.src = URL.createObjectURL(await res.blob());
  img.alt = `QR code of ticket ${ticket.code}`;
  img.className = "qr";
  slot.append(img);
}

function show(order) {
  setText("order-title", order.status === "paid" ? "You have tickets!" : `Order ${order.status}`);
  setText(
    "order-desc",
    `Order ${order.id}: ${order.tickets.length} ticket${order.tickets.length === 1 ? "" : "s"}, ${money(order.total, order.currency)} paid.`,
  );
  const list = document.getElementById("tickets");
  list.replaceChildren();
  for (const t of order.tickets) {
    const li = document.createElement("li");
    li.className = "ticket";
    const seat = document.createElement("p");
    seat.textContent = t.seat.includes("-") ? `Seat ${t.seat}` : `Admission ${t.seat}`;
    const qr = document.createElement("div");
    const code = document.createElement("code");
    code.textContent = t.code;
    const label = document.createElement("p");
    label.className = "muted small";
    label.textContent = "Ticket code (shown at the door)";
    li.append(seat, qr, label, code);
    list.append(li);
    showQr(t, qr);
  }
}

async function load() {
  const kept = sessionStorage.getItem(`bw.order.${orderId}`);
  if (kept) show(JSON.parse(kept));
  const r = await api(`/v1/orders/${encodeURIComponent(orderId)}`, { token });
  if (r.ok) show(r.data.order);
  else if (!kept) setText("order-desc", problemText(r));
}

if (token) load();

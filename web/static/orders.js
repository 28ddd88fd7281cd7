// My orders: the buyer's orders, newest first.
import { api, money, problemText, requireToken, setText } from "./bw.js";

const token = requireToken("buyer");

async function load() {
  const r = await api("/v1/orders", { token });
  if (!r.ok) {
    setText("orders-status", problemText(r));
    return;
  }
  const orders = r.data.orders;
  setText("orders-status", orders.length ? `${orders.length} order${orders.length === 1 ? "" : "s"}.` : "No orders yet.");
  const list = document.getElementById("orders");
  list.replaceChildren();
  for (const o of orders) {
    const li = document.createElement("li");
    li.className = "card";
    const h = document.createElement("h2");
    const a = document.createElement("a");
    a.href = `/orders/${encodeURIComponent(o.id)}`;
    a.textContent = `${o.tickets.length} ticket${o.tickets.length === 1 ? "" : "s"} · ${money(o.total, o.currency)}`;
    h.append(a);
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = `${new Date(o.createdAt).toLocaleString()} · event ${o.eventId} · ${o.status}`;
    li.append(h, p);
    list.append(li);
  }
}

if (token) load();

// My orders: the buyer's orders, newest first. The list is read from the order shards, which the orders
// queue fills a moment after a checkout: an order this tab has just paid for (kept in sessionStorage by
// the checkout) is shown from what the checkout answered until the list has it, and the list is read again
// every 2 s meanwhile (for a minute at most).
import { api, money, problemText, requireToken, setText } from "./bw.js";

const token = requireToken("buyer");
const RETRY_MS = 2_000;
const RETRY_FOR_MS = 60_000;
const started = Date.now();

/** Orders this tab paid for, as the checkout answered them. */
function justPaid() {
  const out = [];
  for (let i = 0; i < sessionStorage.length; i++) {
    const key = sessionStorage.key(i);
    if (!key?.startsWith("bw.order.")) continue;
    try {
      out.push(JSON.parse(sessionStorage.getItem(key)));
    } catch {
      sessionStorage.removeItem(key);
    }
  }
  return out;
}

function item(o, pending) {
  const li = document.createElement("li");
  li.className = "card";
  const h = document.createElement("h2");
  const a = document.createElement("a");
  a.href = `/orders/${encodeURIComponent(o.id)}`;
  a.textContent = `${o.tickets.length} ticket${o.tickets.length === 1 ? "" : "s"} · ${money(o.total, o.currency)}`;
  h.append(a);
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = `${new Date(o.createdAt).toLocaleString()} · event ${o.eventId} · ${o.status}${pending ? " · just paid, being filed" : ""}`;
  li.append(h, p);
  return li;
}

async function load() {
  const r = await api("/v1/orders", { token });
  if (!r.ok) {
    setText("orders-status", problemText(r));
    return;
  }
  const orders = r.data.orders;
  const listed = new Set(orders.map((o) => o.id));
  const missing = justPaid().filter((o) => !listed.has(o.id));
  // Filed now: no longer needed from this tab's memory.
  for (const o of justPaid()) if (listed.has(o.id)) sessionStorage.removeItem(`bw.order.${o.id}`);
  const all = [...missing.map((o) => ({ o, pending: true })), ...orders.map((o) => ({ o, pending: false }))].sort(
    (x, y) => Date.parse(y.o.createdAt) - Date.parse(x.o.createdAt),
  );
  setText("orders-status", all.length ? `${all.length} order${all.length === 1 ? "" : "s"}.` : "No orders yet.");
  document.getElementById("orders").replaceChildren(...all.map(({ o, pending }) => item(o, pending)));
  if (missing.length && Date.now() - started < RETRY_FOR_MS) setTimeout(load, RETRY_MS);
}

if (token) load();

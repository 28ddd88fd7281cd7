// Checkout: the hold's countdown (announced to screen readers each minute, and at 30 s) and payment
// through the API: a card through Stripe.js where the server has Stripe keys (the page carries the
// publishable key in data-stripe-key), the sandbox's test tokens locally. A declined card keeps the hold;
// a card payment Stripe has not settled yet (202 pending) is followed until it is paid or fails; an expired
// hold says so.
import { api, clock, money, pageData, problemText, requireToken, setText } from "./bw.js";

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

/** The payment method picked: "card" (the default where cards are on) or a sandbox token. */
const choice = (form) => new FormData(form).get("token") ?? "card";

/** Shows the card form only while "Card" is picked (the sandbox's radios sit beside it locally). */
function showCard() {
  const field = document.getElementById("card-field");
  if (field) field.hidden = choice(document.getElementById("pay-form")) !== "card";
}

// ---- Stripe.js (cards): loaded from js.stripe.com only on a page that takes cards.
const stripeKey = pageData().stripeKey;
let stripe;
let cardElement;

/** Loads https://js.stripe.com/v3/ and mounts the Card Element; a failure says so next to the form. */
function loadStripe() {
  const script = document.createElement("script");
  script.src = "https://js.stripe.com/v3/";
  script.addEventListener("load", () => {
    stripe = window.Stripe(stripeKey);
    cardElement = stripe.elements().create("card", { hidePostalCode: true });
    const mountPoint = document.getElementById("card-element");
    mountPoint.textContent = "";
    cardElement.mount(mountPoint);
    cardElement.on("change", (ev) => setText("card-error", ev.error ? ev.error.message : ""));
  });
  script.addEventListener("error", () => {
    setText("card-element", "");
    setText("card-error", "The card form could not load (Stripe unreachable). Reload the page to try again.");
  });
  document.head.append(script);
}

/** The payment body of this attempt, or null after showing why there is none (card form not ready, invalid). */
async function paymentOf(method) {
  if (method !== "card") return { method: "sandbox", token: method };
  if (!cardElement) {
    setText("card-error", "The card form has not loaded yet.");
    return null;
  }
  const { paymentMethod, error } = await stripe.createPaymentMethod({ type: "card", card: cardElement });
  if (error) {
    setText("card-error", error.message || "Check the card details.");
    return null;
  }
  return { method: "card", token: paymentMethod.id };
}

/** Off to the confirmation page of `order` (kept for it and "my orders" when the whole order is at hand). */
function confirmed(order) {
  clearInterval(timer);
  if (Array.isArray(order.tickets)) sessionStorage.setItem(`bw.order.${order.id}`, JSON.stringify(order));
  location.assign(`/orders/${encodeURIComponent(order.id)}`);
}

/** Poll interval and bound for a pending card payment (its checkout is presumed dead after 2 minutes). */
const PENDING_EVERY_MS = 2_000;
const PENDING_FOR_MS = 150_000;

/**
 * A card payment Stripe accepted but has not settled (202): the hold stays locked in checkout. Polls the
 * order until it is paid (→ confirmation); if the order goes away the payment failed and the hold is
 * read again (held → try another card; otherwise it ended). Gives up politely after PENDING_FOR_MS.
 */
async function followPending(order) {
  setText("pay-status", "Payment processing… Your bank is confirming the payment; this page moves on by itself.");
  const until = Date.now() + PENDING_FOR_MS;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, PENDING_EVERY_MS));
    const r = await api(`/v1/orders/${encodeURIComponent(order.id)}`, { token });
    if (r.ok && r.data.order.status !== "pending") return confirmed(r.data.order);
    if (r.ok || r.status === 0 || r.status === 429 || r.status >= 500) continue;
    const h = await api(`/v1/holds/${encodeURIComponent(hold.id)}`, { token });
    if (h.ok && h.data.hold.status === "active") {
      hold = h.data.hold;
      setText("pay-status", "");
      setText("pay-error", "The payment did not go through. Your places are still held: try another card.");
      document.getElementById("pay-button").disabled = false;
      return;
    }
    if (h.ok && h.data.hold.status === "sold" && h.data.hold.orderId) return confirmed({ id: h.data.hold.orderId });
    setText("pay-status", "");
    return ended(h.ok ? `This hold is ${h.data.hold.status}.` : problemText(h));
  }
  setText("pay-status", "");
  setText("pay-error", "The payment is still processing. Your order will appear in “My orders” once it is paid.");
}

async function pay(e) {
  e.preventDefault();
  if (!hold) return;
  const button = document.getElementById("pay-button");
  button.disabled = true;
  setText("pay-error", "");
  setText("card-error", "");
  setText("countdown-sr", "Paying…");
  const payment = await paymentOf(choice(e.target));
  if (!payment) {
    button.disabled = false;
    return;
  }
  const r = await api("/v1/orders", {
    method: "POST",
    token,
    body: { holdId: hold.id, payment },
    headers: { "Idempotency-Key": crypto.randomUUID() },
  });
  if (r.ok && r.status === 202) return followPending(r.data.order);
  if (r.ok) return confirmed(r.data.order);
  if (r.data?.code === "hold_expired") {
    clearInterval(timer);
    ended(problemText(r));
    return;
  }
  button.disabled = false;
  setText("pay-error", r.data?.code === "payment_declined" ? declineText(r) : problemText(r));
}

/** A 402's words: a decline, or a card that needs 3-D Secure (this page does not run that challenge). */
function declineText(r) {
  if (/authentication_required/.test(r.data?.detail ?? ""))
    return "This card needs 3-D Secure authentication, which this page cannot do. Your places are still held: try another card.";
  return "The card was declined. Your places are still held: try another card.";
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
  if (stripeKey) loadStripe();
  showCard();
  document.getElementById("pay-form").addEventListener("change", showCard);
  document.getElementById("pay-form").addEventListener("submit", pay);
  document.getElementById("release-button").addEventListener("click", release);
  load();
}

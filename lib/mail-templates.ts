/**
 * Buyer mail templates: each renders a subject, a plain-text and an HTML body from the facts of one
 * occurrence. Every value is escaped in the HTML; amounts are minor units formatted in their currency.
 */

/** A rendered mail body. */
export interface Rendered {
  subject: string;
  text: string;
  html: string;
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
/** HTML-escapes a value. */
export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);

/** An amount in minor units, formatted (`100.00 EUR`; zero-decimal currencies such as JPY stay whole). */
export function money(minor: number, currency: string): string {
  const digits = currencyDigits(currency);
  return digits === null ? `${minor} ${currency} (minor units)` : `${(minor / 10 ** digits).toFixed(digits)} ${currency}`;
}

/** The minor-unit digits of each currency seen (building an Intl.NumberFormat costs more than a mail's rendering). */
const digitsOf = new Map<string, number | null>();
/** The minor-unit digits of `currency`; null when Intl does not know it. */
function currencyDigits(currency: string): number | null {
  const known = digitsOf.get(currency);
  if (known !== undefined) return known;
  let digits: number | null;
  try {
    digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    digits = null;
  }
  if (digitsOf.size >= 1_000) digitsOf.clear();
  digitsOf.set(currency, digits);
  return digits;
}

const page = (title: string, inner: string): string =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body style="font-family:sans-serif">${inner}</body></html>`;

/**
 * The link to a ticket's QR code. With `sig` (lib/tickets.ts qrLinkSignature) it opens without the buyer's
 * token, as a link in a mail must; without it the API asks for the token.
 */
export const qrLink = (baseUrl: string, ticketId: string, sig?: string): string =>
  `${baseUrl.replace(/\/$/, "")}/v1/tickets/${encodeURIComponent(ticketId)}/qr.svg${sig ? `?sig=${encodeURIComponent(sig)}` : ""}`;

/** Order confirmation: the tickets, each with a link to its QR code (signed when the ticket has `sig`). */
export function orderConfirmation(
  o: {
    orderId: string;
    eventId: string;
    eventName?: string;
    total: number;
    currency: string;
    tickets: { id: string; seat: string; sig?: string }[];
  },
  baseUrl: string,
): Rendered {
  const what = o.eventName ?? o.eventId;
  const subject = `Your tickets for ${what}`;
  const lines = o.tickets.map((t) => `- ${t.seat}: ${qrLink(baseUrl, t.id, t.sig)}`);
  const text = [
    "Thank you for your order.",
    "",
    `Order ${o.orderId} for ${what}: ${o.tickets.length} ticket(s), total ${money(o.total, o.currency)}.`,
    "",
    "Your tickets (show the QR code at the gate):",
    ...lines,
  ].join("\n");
  const rows = o.tickets.map(
    (t) => `<li>${esc(t.seat)}: <a href="${esc(qrLink(baseUrl, t.id, t.sig))}">QR code of ticket ${esc(t.id)}</a></li>`,
  );
  const html = page(
    subject,
    `<h1>Thank you for your order</h1><p>Order <code>${esc(o.orderId)}</code> for <strong>${esc(what)}</strong>: ${o.tickets.length} ticket(s), total ${esc(money(o.total, o.currency))}.</p><p>Your tickets (show the QR code at the gate):</p><ul>${rows.join("")}</ul>`,
  );
  return { subject, text, html };
}

/** Refund notice: the money that goes back and the tickets that are void. */
export function refundNotice(o: { orderId: string; amount: number; currency: string; tickets: string[]; reason?: string }): Rendered {
  const subject = `Refund for order ${o.orderId}`;
  const voided = o.tickets.length ? `Tickets no longer valid: ${o.tickets.join(", ")}.` : "";
  const reason = o.reason ? `Reason: ${o.reason}.` : "";
  const text = [
    `We refunded ${money(o.amount, o.currency)} for order ${o.orderId}.`,
    voided,
    reason,
    "It reaches your card within a few days.",
  ]
    .filter(Boolean)
    .join("\n");
  const html = page(
    subject,
    `<h1>Refund</h1><p>We refunded <strong>${esc(money(o.amount, o.currency))}</strong> for order <code>${esc(o.orderId)}</code>.</p>${
      voided ? `<p>${esc(voided)}</p>` : ""
    }${reason ? `<p>${esc(reason)}</p>` : ""}<p>It reaches your card within a few days.</p>`,
  );
  return { subject, text, html };
}

/** Cancellation notice: the event is off and the order is refunded in full. */
export function cancellationNotice(o: {
  orderId: string;
  eventId: string;
  eventName?: string;
  amount: number;
  currency: string;
}): Rendered {
  const what = o.eventName ?? o.eventId;
  const subject = `Cancelled: ${what}`;
  const text = `${what} has been cancelled by its organizer. Your order ${o.orderId} is refunded in full (${money(o.amount, o.currency)}); your tickets are no longer valid.`;
  const html = page(
    subject,
    `<h1>Event cancelled</h1><p><strong>${esc(what)}</strong> has been cancelled by its organizer.</p><p>Your order <code>${esc(o.orderId)}</code> is refunded in full (${esc(money(o.amount, o.currency))}); your tickets are no longer valid.</p>`,
  );
  return { subject, text, html };
}

// Breakwater's pages: what every page script shares (sign-in, the API client, formatting). No framework.
//
// Sign-in: the token is a JWT the API accepts (Authorization: Bearer). Locally /signin asks the server for
// a dev token. In production the site that embeds Breakwater hands its JWT over in the link's fragment,
// `https://tickets.example.com/events/<id>#token=<JWT>`: a fragment never reaches a server or its logs,
// and this script moves it into localStorage and removes it from the address bar.

const TOKEN_KEYS = { buyer: "bw.token.buyer", organizer: "bw.token.organizer" };

/** The claims of a JWT (not verified here: the API verifies every call), or null. */
export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

/** Which stored slot a role signs into: organizers and admins use the console's. */
const slotOf = (role) => (role === "buyer" ? "buyer" : "organizer");

/** Keeps `token` for its role. */
export function storeToken(token) {
  const claims = claimsOf(token);
  if (!claims?.role) return false;
  localStorage.setItem(TOKEN_KEYS[slotOf(claims.role)], token);
  return true;
}

/** The stored, unexpired token of the buyer or the organizer, or null. */
export function tokenFor(area) {
  const token = localStorage.getItem(TOKEN_KEYS[area]);
  const claims = token && claimsOf(token);
  if (!claims || (claims.exp && claims.exp * 1000 <= Date.now())) return null;
  return token;
}

/** The token of `area`, or off to /signin (which comes back here). */
export function requireToken(area) {
  const token = tokenFor(area);
  if (!token) location.assign(`/signin?role=${area}&next=${encodeURIComponent(location.pathname + location.search)}`);
  return token;
}

/** The page's area (buyer or organizer), from <body data-area>. */
export const area = () => document.body.dataset.area || "buyer";

/** The data attributes of <main>. */
export const pageData = () => document.getElementById("main").dataset;

/**
 * Calls the API. Resolves to `{ ok, status, data, headers }`; `data` is the JSON body (a problem document
 * when not ok). Network failures resolve too (status 0), so callers show them instead of throwing.
 */
export async function api(path, { method = "GET", body, token, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    return { ok: false, status: 0, data: { title: "Network error", detail: String(err) }, headers: new Headers() };
  }
  let data = null;
  const type = res.headers.get("Content-Type") || "";
  if (type.includes("json")) data = await res.json().catch(() => null);
  return { ok: res.ok, status: res.status, data, headers: res.headers };
}

/** A one-line message for a failed call (the problem document's detail, else its title). */
export const problemText = (r) => (r.data && (r.data.detail || r.data.title)) || `Request failed (${r.status})`;

/** Minor units as money. */
export const money = (minor, currency) => new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 100);

/** Seconds as "m:ss" (or "h:mm:ss"). */
export function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Seconds as words for a wait: "about 3 minutes", "less than a minute". */
export function waitText(seconds) {
  if (seconds < 60) return "less than a minute";
  const m = Math.round(seconds / 60);
  if (m < 90) return `about ${m} minute${m === 1 ? "" : "s"}`;
  return `about ${Math.round(m / 60)} hours`;
}

/** Sets the text of element `id` when it exists. */
export function setText(id, text) {
  const el = document.getElementById(id);
  if (el) el.textContent = text;
}

/** Replaces the header's sign-in link with who is signed in and a sign-out button. */
function showWhoami() {
  const slot = document.getElementById("whoami");
  const token = tokenFor(area());
  if (!slot || !token) return;
  const claims = claimsOf(token);
  slot.textContent = `${claims.sub} (${claims.role}) `;
  const out = document.createElement("button");
  out.type = "button";
  out.textContent = "Sign out";
  out.addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEYS[area()]);
    location.assign("/");
  });
  slot.append(out);
}

// The embedding site's hand-over: #token=<JWT>.
const handed = /(?:^#|&)token=([^&]+)/.exec(location.hash);
if (handed) {
  storeToken(decodeURIComponent(handed[1]));
  history.replaceState(null, "", location.pathname + location.search);
}
showWhoami();

import type { Context } from "hono";
import { CATALOG_CACHE, type CachePolicy, etagMatches } from "../http";
import type { AppEnv } from "../types";

/** A rendered page: its HTML and a strong ETag of it. */
interface Page {
  html: string;
  etag: string;
}

/**
 * What the pages may load: their own module scripts and stylesheet, the API on this origin, and images
 * from here, `data:` or `blob:` (ticket QR codes are fetched with the buyer's token and shown from a blob).
 */
const PAGE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/**
 * The checkout page's policy when it takes cards: the pages' own, plus what Stripe.js needs by Stripe's
 * documented list for Elements without the Address Element (its script and the Card Element's frames from
 * js.stripe.com and its subdomains, its calls to api.stripe.com). 3-D Secure is not handled in the page (the
 * API answers 402 authentication_required), so hooks.stripe.com is not allowed.
 */
export const CARD_PAGE_CSP =
  "default-src 'self'; script-src 'self' https://js.stripe.com https://*.js.stripe.com; style-src 'self'; " +
  "img-src 'self' data: blob:; connect-src 'self' https://api.stripe.com; " +
  "frame-src https://js.stripe.com https://*.js.stripe.com; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** FNV-1a of a string, hex: the ETag of a page (a cache validator, not a security measure). */
function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** A page from its HTML (the doctype added here: JSX cannot write it). */
function pageOf(html: string): Page {
  const full = `<!doctype html>${html}`;
  return { html: full, etag: `"pg-${fnv1a(full)}-${full.length.toString(36)}"` };
}

/**
 * Rendered pages by the cached value they were built from (an event document's cache entry, the event
 * list's) and the page's name: a page is rendered once per value, and a new value (the document changed)
 * renders anew. The WeakMap lets the pages go with their value when the catalog cache drops it.
 */
const byValue = new WeakMap<object, Map<string, Page>>();
/** Pages that depend on nothing but the build (and the Worker's settings), by name. */
const fixed = new Map<string, Page>();

/** The page `name` rendered from `source`, rendered once per source object. */
export function pageFor(source: object, name: string, render: () => string): Page {
  let pages = byValue.get(source);
  if (!pages) {
    pages = new Map();
    byValue.set(source, pages);
  }
  let page = pages.get(name);
  if (!page) {
    page = pageOf(render());
    pages.set(name, page);
  }
  return page;
}

/** A page that is the same for every request of this build, rendered once per isolate. */
export function fixedPage(name: string, render: () => string): Page {
  let page = fixed.get(name);
  if (!page) {
    page = pageOf(render());
    fixed.set(name, page);
  }
  return page;
}

const cacheControl = (p: CachePolicy) => `public, max-age=${p.maxAge}, s-maxage=${p.sMaxAge}, stale-while-revalidate=${p.swr}`;
const PAGE_CACHE_CONTROL = cacheControl(CATALOG_CACHE);

/**
 * Answers a page: 304 when `If-None-Match` names it, else the HTML. Pages are public (no buyer data is
 * in them: scripts fetch that with the buyer's token), cached like the catalog they are built from.
 */
export function sendPage(c: Context<AppEnv>, page: Page, status: 200 | 404 = 200, csp: string = PAGE_CSP): Response {
  const headers = {
    "Cache-Control": PAGE_CACHE_CONTROL,
    ETag: page.etag,
    "Content-Security-Policy": csp,
  };
  if (status === 200 && etagMatches(c.req.header("If-None-Match"), page.etag)) return c.body(null, 304, headers);
  return c.body(page.html, status, { ...headers, "Content-Type": "text/html; charset=utf-8" });
}

/** The string of a rendered JSX tree (every page component is synchronous). */
export function html(node: { toString(): string | Promise<string> }): string {
  const out = node.toString();
  if (typeof out !== "string") throw new Error("page components must be synchronous");
  return out;
}

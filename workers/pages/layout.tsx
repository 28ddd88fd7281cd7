/** @jsxImportSource hono/jsx */
import type { Child } from "hono/jsx";

/** Which part of the site a page belongs to: its header links and the role its scripts sign in as. */
type Area = "buyer" | "organizer";

/** Props of {@link Layout}. */
export interface LayoutProps {
  title: string;
  area: Area;
  /** Page scripts under /static/ (ES modules; each imports /static/bw.js itself). */
  scripts?: string[];
  /** Attributes the page's script reads (ids, limits): `data-*` on <main>. */
  data?: Record<string, string | number | boolean>;
  children?: Child;
}

/**
 * The frame of every page: one stylesheet, module scripts (deferred by nature), a header whose sign-in
 * status the shared script fills in, and <main> carrying the page's data attributes. Nothing in it depends
 * on the caller, so every page is the same for every buyer and may sit in shared caches.
 */
export function Layout({ title, area, scripts = [], data = {}, children }: LayoutProps) {
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(data)) attrs[`data-${k}`] = String(v);
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width,initial-scale=1" />
        <title>{`${title} · Breakwater`}</title>
        <link rel="stylesheet" href="/static/app.css" />
        <script type="module" src="/static/bw.js" />
        {scripts.map((s) => (
          <script type="module" src={`/static/${s}`} />
        ))}
      </head>
      <body data-area={area}>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <a class="brand" href={area === "organizer" ? "/organizer" : "/"}>
            Breakwater{area === "organizer" ? " · organizer" : ""}
          </a>
          <nav aria-label="Site">
            {area === "organizer" ? (
              <>
                <a href="/organizer">Console</a>
                <a href="/">Storefront</a>
              </>
            ) : (
              <>
                <a href="/">Events</a>
                <a href="/orders">My orders</a>
              </>
            )}
            <span id="whoami" class="whoami">
              <a href={`/signin?role=${area}`}>Sign in</a>
            </span>
          </nav>
        </header>
        <main id="main" {...attrs}>
          {children}
        </main>
        <noscript>
          <p class="notice">The live parts of this page (availability, the queue, seats, payment) need JavaScript.</p>
        </noscript>
      </body>
    </html>
  );
}

/** Minor units as money in `currency` (server side; the scripts have the same in bw.js). */
export const money = (minor: number, currency: string): string =>
  new Intl.NumberFormat("en", { style: "currency", currency }).format(minor / 100);

/** An ISO time as a readable UTC date and time (pages are shared by every buyer, so no local zone here). */
export const when = (iso: string): string =>
  new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short", timeZone: "UTC" }).format(new Date(iso)) + " UTC";

/** @jsxImportSource hono/jsx */
import { type Context, Hono } from "hono";
import { eventDocOf, readEvent, readEventList } from "../../lib/catalog";
import { config } from "../../lib/config";
import type { EventDoc, EventSummary } from "../../lib/event-schema";
import { EVENT_ID, SECTION_ID } from "../../lib/ids";
import { ApiError } from "../../lib/problem";
import { type CachedBody, parsedBody } from "../../lib/read-cache";
import { cardCheckoutKey } from "../../lib/stripe";
import { cacheStatusOf, readContext } from "../http";
import { ConsolePage, LiveSalePage } from "../pages/organizer";
import { CARD_PAGE_CSP, fixedPage, html, pageFor, sendPage } from "../pages/render";
import {
  CheckoutPage,
  EventListPage,
  EventPage,
  NotFoundPage,
  OrderPage,
  OrdersPage,
  QueuePage,
  SectionPage,
  SignInPage,
} from "../pages/storefront";
import type { AppEnv } from "../types";

/**
 * The storefront (`/`) and the organizer console (`/organizer`): server-rendered pages (Hono JSX) built
 * from the same cached catalog documents as the API, rendered once per document version per isolate and
 * answered with the catalog's Cache-Control and an ETag. No page holds buyer data: the scripts under
 * /static/ (Workers Static Assets, web/static/) fetch that from the API with the buyer's token. A page
 * costs no Durable Object call; the queue page's polling is the API's own `GET /v1/events/:id/queue`.
 */
export const pages = new Hono<AppEnv>();

const parseList = (body: string): EventSummary[] => (JSON.parse(body) as { events: EventSummary[] }).events;

const notFound = (c: Context<AppEnv>, what: string): Response =>
  sendPage(
    c,
    fixedPage(`404:${what}`, () => html(<NotFoundPage what={what} />)),
    404,
  );

pages.get("/", async (c) => {
  const read = await readEventList(readContext(c));
  if (!read.value) throw new ApiError("overloaded", "The event list is temporarily unavailable.", { retryAfterSeconds: 5 });
  c.set("cacheStatus", cacheStatusOf(read.layer));
  const value = read.value;
  return sendPage(
    c,
    pageFor(value, "list", () => html(<EventListPage events={parsedBody(value, parseList)} />)),
  );
});

/** The cached document of the event named in the path (its cache entry keeps the pages built from it). */
async function cachedEvent(c: Context<AppEnv>): Promise<{ value: CachedBody; event: EventDoc } | null> {
  const id = c.req.param("id") ?? "";
  if (!EVENT_ID.test(id)) return null;
  const read = await readEvent(readContext(c), id);
  c.set("cacheStatus", cacheStatusOf(read.layer));
  return read.value ? { value: read.value, event: eventDocOf(read.value) } : null;
}

const NO_EVENT = "There is no such event.";
const NO_SECTION = "There is no such section in this event.";

pages.get("/events/:id", async (c) => {
  const found = await cachedEvent(c);
  if (!found) return notFound(c, NO_EVENT);
  return sendPage(
    c,
    pageFor(found.value, "event", () => html(<EventPage event={found.event} />)),
  );
});
pages.get("/events/:id/queue", async (c) => {
  const found = await cachedEvent(c);
  if (!found) return notFound(c, NO_EVENT);
  return sendPage(
    c,
    pageFor(found.value, "queue", () => html(<QueuePage event={found.event} />)),
  );
});
pages.get("/events/:id/sections/:sectionId", async (c) => {
  const sectionId = c.req.param("sectionId");
  const found = SECTION_ID.test(sectionId) ? await cachedEvent(c) : null;
  const section = found?.event.sections.find((s) => s.id === sectionId);
  if (!found || !section) return notFound(c, found ? NO_SECTION : NO_EVENT);
  return sendPage(
    c,
    pageFor(found.value, `section:${section.id}`, () => html(<SectionPage event={found.event} section={section} />)),
  );
});
pages.get("/checkout/:holdId", (c) => {
  // Cards when Stripe is configured (the publishable key is public, so the page stays shareable);
  // the sandbox's test cards when cards are off, and locally (DEV_AUTH) beside them.
  const cardKey = cardCheckoutKey(c.env);
  const sandbox = cardKey === null || config(c.env).DEV_AUTH;
  return sendPage(
    c,
    fixedPage(`checkout:${cardKey ?? ""}:${sandbox}`, () => html(<CheckoutPage cardKey={cardKey} sandbox={sandbox} />)),
    200,
    cardKey ? CARD_PAGE_CSP : undefined,
  );
});
pages.get("/orders/:id", (c) =>
  sendPage(
    c,
    fixedPage("order", () => html(<OrderPage />)),
  ),
);
pages.get("/orders", (c) =>
  sendPage(
    c,
    fixedPage("orders", () => html(<OrdersPage />)),
  ),
);
pages.get("/signin", (c) => {
  const devAuth = c.env.DEV_AUTH === "true";
  return sendPage(
    c,
    fixedPage(`signin:${devAuth}`, () => html(<SignInPage devAuth={devAuth} />)),
  );
});

pages.get("/organizer", (c) =>
  sendPage(
    c,
    fixedPage("console", () => html(<ConsolePage />)),
  ),
);
pages.get("/organizer/events/:id", async (c) => {
  const found = await cachedEvent(c);
  if (!found) return notFound(c, NO_EVENT);
  return sendPage(
    c,
    pageFor(found.value, "live", () => html(<LiveSalePage event={found.event} />)),
  );
});

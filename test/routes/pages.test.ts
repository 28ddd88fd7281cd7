import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { config } from "../../lib/config";
import { metrics } from "../../lib/metrics";
import { pages } from "../../workers/routes/pages";
import { call, createEvent, tokenFor } from "../helpers";

/** The Worker's server-rendered pages (the browser journeys are in test/e2e/storefront.test.ts). */

const waitingRoomCalls = () => metrics.sum("breakwater_waiting_room_do_calls_total");

describe("storefront pages", () => {
  it("shows a cancelled event as cancelled, with nothing to buy", async () => {
    const org = await tokenFor("pages-cancel-org", "organizer");
    const event = await createEvent(org);
    expect(await (await call(`/events/${event.id}`)).text()).toContain(`href="/events/${event.id}/sections/a"`);
    expect((await call(`/v1/events/${event.id}/cancel`, { method: "POST", token: org })).status).toBe(202);
    const html = await (await call(`/events/${event.id}`)).text();
    expect(html).toContain("This event was cancelled by its organizer");
    expect(html).not.toContain(`href="/events/${event.id}/sections/`);
  });

  it("renders the event list and an event page from the catalog, cacheable with an ETag and 304", async () => {
    const org = await tokenFor("pages-org", "organizer");
    const event = await createEvent(org, { name: "Pages <3 & Day" });
    const list = await call("/");
    expect(list.status).toBe(200);
    expect(list.headers.get("Content-Type")).toBe("text/html; charset=utf-8");
    expect(list.headers.get("Cache-Control")).toBe("public, max-age=1, s-maxage=5, stale-while-revalidate=30");
    const listHtml = await list.text();
    expect(listHtml.startsWith("<!doctype html>")).toBe(true);
    // Escaped, and linked to its page.
    expect(listHtml).toContain("Pages &lt;3 &amp; Day");
    expect(listHtml).toContain(`href="/events/${event.id}"`);

    const page = await call(`/events/${event.id}`);
    expect(page.status).toBe(200);
    const etag = page.headers.get("ETag") ?? "";
    expect(etag).toMatch(/^"pg-[0-9a-f]{8}-[0-9a-z]+"$/);
    expect(page.headers.get("Content-Security-Policy")).toContain("script-src 'self'");
    expect(page.headers.get("Referrer-Policy")).toBe("no-referrer");
    // Public: no per-request span header.
    expect(page.headers.get("traceparent")).toBeNull();
    const html = await page.text();
    expect(html).toContain('<script type="module" src="/static/event.js">');
    expect(html).toContain('data-event-id="' + event.id + '"');
    expect(html).toContain("€80.00"); // Block A at 8000 minor units
    expect(html).toContain(`href="/events/${event.id}/sections/a"`);

    const again = await call(`/events/${event.id}`, { headers: { "If-None-Match": etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
    // The same bytes while the document is unchanged.
    expect(await (await call(`/events/${event.id}`)).text()).toBe(html);
  });

  it("renders a new page when the organizer changes the event", async () => {
    const org = await tokenFor("pages-org2", "organizer");
    const event = await createEvent(org, { name: "Before" });
    const first = await call(`/events/${event.id}`);
    const etag = first.headers.get("ETag");
    expect(await first.text()).toContain("Before");
    const patched = await call(`/v1/events/${event.id}`, { method: "PATCH", token: org, json: { name: "After" } });
    expect(patched.status).toBe(200);
    const second = await call(`/events/${event.id}`, { headers: { "If-None-Match": etag ?? "" } });
    expect(second.status).toBe(200);
    expect(second.headers.get("ETag")).not.toBe(etag);
    expect(await second.text()).toContain("After");
  });

  it("links sections through the queue when the waiting room is on, and the queue page costs no Durable Object call", async () => {
    const org = await tokenFor("pages-org3", "organizer");
    const event = await createEvent(org, { waitingRoom: { enabled: true } });
    const html = await (await call(`/events/${event.id}`)).text();
    expect(html).toContain(`href="/events/${event.id}/queue?section=a"`);
    const before = waitingRoomCalls();
    for (let i = 0; i < 20; i++) {
      const q = await call(`/events/${event.id}/queue`);
      expect(q.status).toBe(200);
      await q.arrayBuffer();
    }
    expect(waitingRoomCalls()).toBe(before);
  });

  it("draws every seat of a seated section and a quantity picker for GA, limited per buyer", async () => {
    const org = await tokenFor("pages-org4", "organizer");
    const event = await createEvent(org);
    const seated = await (await call(`/events/${event.id}/sections/a`)).text();
    // Two rows of five seats, one tab stop.
    expect(seated.match(/class="seat" data-seat=/g)?.length).toBe(10);
    expect(seated).toContain('data-seat="2-5"');
    expect(seated).toContain('aria-label="Row 2, seat 5"');
    expect(seated.match(/tabindex="0"/g)?.length).toBe(1);
    const ga = await (await call(`/events/${event.id}/sections/floor`)).text();
    expect(ga).toContain('id="quantity"');
    expect(ga).toContain('max="4"');
    expect(ga).not.toContain('class="seat"');
  });

  it("answers unknown events and sections with a 404 page", async () => {
    const org = await tokenFor("pages-org5", "organizer");
    const event = await createEvent(org);
    for (const path of [
      "/events/evt_doesnotexist00000000",
      "/events/nonsense!",
      `/events/${event.id}/sections/zz`,
      "/organizer/events/evt_nope",
    ]) {
      const res = await call(path);
      expect(res.status, path).toBe(404);
      expect(res.headers.get("Content-Type")).toContain("text/html");
      expect(await res.text()).toContain("Not found");
    }
  });

  it("serves the shells of the buyer's private pages the same to everyone (no buyer data in them)", async () => {
    for (const path of ["/checkout/hld_x", "/orders/ord_x", "/orders", "/organizer", "/signin"]) {
      const a = await call(path);
      const b = await call(path, { token: await tokenFor("someone", "buyer") });
      expect(a.status, path).toBe(200);
      expect(a.headers.get("ETag")).toBe(b.headers.get("ETag"));
      expect(a.headers.get("Cache-Control")).toContain("public");
      await a.arrayBuffer();
      await b.arrayBuffer();
    }
    // DEV_AUTH is on in tests: the sign-in page offers the dev token form.
    expect(await (await call("/signin")).text()).toContain('id="signin-form"');
  });

  it("offers cards on the checkout page only with both Stripe keys; the sandbox beside them locally, alone where cards are off", async () => {
    const pk = "pk_test_51PageKeyForTheCheckoutPage";
    const checkout = async (over: Record<string, string>) => {
      const res = await pages.request("/checkout/hld_x", {}, { ...env, ...over });
      return { csp: res.headers.get("Content-Security-Policy") ?? "", html: await res.text(), status: res.status };
    };
    // Cards off (no publishable key): the sandbox's test cards, the pages' own policy.
    const off = await checkout({ STRIPE_PUBLISHABLE_KEY: "" });
    expect(off.html).not.toContain("data-stripe-key");
    expect(off.html).toContain('value="tok_ok" checked=""');
    expect(off.csp).not.toContain("stripe");
    // A publishable key without the secret key: still no cards (the API could not charge them).
    const noSecret = await checkout({ STRIPE_PUBLISHABLE_KEY: pk, STRIPE_SECRET_KEY: "" });
    expect(noSecret.html).not.toContain("data-stripe-key");
    // Both keys, locally (DEV_AUTH): "Card" first and checked, the test cards beside it; Stripe allowed by the CSP.
    const local = await checkout({ STRIPE_PUBLISHABLE_KEY: pk });
    expect(local.status).toBe(200);
    expect(local.html).toContain(`data-stripe-key="${pk}"`);
    expect(local.html).toContain('value="card" checked=""');
    expect(local.html).toContain('id="card-element"');
    expect(local.html).toContain('value="tok_ok"');
    expect(local.html).not.toContain('value="tok_ok" checked');
    const secret = (env as { STRIPE_SECRET_KEY?: string }).STRIPE_SECRET_KEY ?? "";
    expect(secret).toMatch(/^sk_/);
    expect(local.html).not.toContain(secret);
    expect(local.csp).toContain("script-src 'self' https://js.stripe.com https://*.js.stripe.com;");
    expect(local.csp).toContain("frame-src https://js.stripe.com https://*.js.stripe.com;");
    expect(local.csp).toContain("connect-src 'self' https://api.stripe.com;");
    expect(local.csp).toContain("frame-ancestors 'none'");
    // Production (no DEV_AUTH): the card form and nothing else.
    const prod = await checkout({ STRIPE_PUBLISHABLE_KEY: pk, DEV_AUTH: "false" });
    expect(prod.html).toContain('id="card-element"');
    expect(prod.html).not.toContain("tok_");
    expect(prod.html).not.toContain('type="radio"');
    // A secret key where the publishable key belongs is refused at the first request.
    expect(() => config({ STRIPE_PUBLISHABLE_KEY: "sk_live_oops" })).toThrow(/STRIPE_PUBLISHABLE_KEY/);
  });
});

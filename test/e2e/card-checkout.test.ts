import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import AxeBuilder from "@axe-core/playwright";
import type { Browser, BrowserContext, Page } from "playwright-core";
import type Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueToken } from "../../lib/auth";
import { type StandinDelivery, type StripeStandin, startStripeStandin } from "../setup/stripe-standin";
import { createSaleEvent, devToken, launchChromium, startTestServer, type TestServer } from "./helpers";

/**
 * Card checkout in a real browser (Debian's Chromium through Playwright) against `npm run serve`'s server
 * configured for cards (both Stripe keys) and pointed at the loopback Stripe stand-in. There is no network
 * here, so https://js.stripe.com/v3/ is answered by test/e2e/fake-stripe.js (Stripe(pk), the Card Element,
 * createPaymentMethod → Stripe's test PaymentMethod ids). The buyer holds two tickets, sees the card form,
 * gets an incomplete number refused in the page, a declined card refused by Stripe (the hold stays), pays
 * with an approved card and lands on the tickets; the stand-in saw exactly one PaymentIntent succeed for
 * the order, confirmed under the order's payment key. A second buyer's payment stays processing (202)
 * until Stripe's signed webhook settles it, and the page follows it to the tickets (or, when it fails, back
 * to the form with the hold). A card needing 3-D Secure is refused in words that say so; an unreachable
 * Stripe.js is said next to the form. A second server without DEV_AUTH (production) offers the card form
 * alone to a buyer handed over with the embedding site's JWT. axe: no serious or critical violation;
 * screenshots at 390 and 1280 px (SCREENSHOTS_DIR, default test-results/screenshots).
 */

const SHOTS = process.env.SCREENSHOTS_DIR ?? "test-results/screenshots";
const PUBLISHABLE_KEY = "pk_test_breakwater_e2e_0123456789";
const FAKE_STRIPE_JS = readFileSync(path.join(import.meta.dirname, "fake-stripe.js"), "utf8");

let standin: StripeStandin;
let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  standin = await startStripeStandin({ secretKey: "sk_test_breakwater_e2e", webhookSecret: "whsec_breakwater_e2e_0123456789" });
  server = await startTestServer({
    STRIPE_SECRET_KEY: standin.secretKey,
    STRIPE_WEBHOOK_SECRET: standin.webhookSecret,
    STRIPE_API_URL: standin.url,
    STRIPE_PUBLISHABLE_KEY: PUBLISHABLE_KEY,
  });
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  await standin?.close();
});

type StandinState = {
  intents: Stripe.PaymentIntent[];
  requests: { method: string; path: string; idempotencyKey: string | null }[];
};
const standinState = async (): Promise<StandinState> => (await (await fetch(`${standin.url}/__state`)).json()) as StandinState;

/** A buyer's browser (UTC) whose requests for Stripe.js get the fake, with page errors and Stripe.js loads counted. */
async function buyerBrowser(): Promise<{ context: BrowserContext; page: Page; errors: string[]; stripeLoads: () => number }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: "UTC", locale: "en-GB" });
  let loads = 0;
  await context.route("https://js.stripe.com/v3/**", (route) => {
    loads++;
    return route.fulfill({ status: 200, contentType: "application/javascript", body: FAKE_STRIPE_JS });
  });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  return { context, page, errors, stripeLoads: () => loads };
}

/** Holds `quantity` GA tickets through the section page, signed in by the embedding site's hand-over (#token=). */
async function holdTickets(page: Page, eventId: string, token: string, quantity: number): Promise<string> {
  await page.goto(`${server.url}/events/${eventId}/sections/ga#token=${encodeURIComponent(token)}`);
  await page.getByLabel("Tickets", { exact: true }).fill(String(quantity));
  await page.getByRole("button", { name: "Hold tickets" }).click();
  await page.waitForURL(/\/checkout\/hld_/);
  return decodeURIComponent(page.url().split("/").pop() ?? "");
}

async function payWith(page: Page, number: string): Promise<void> {
  await page.getByLabel("Card number").fill(number);
  await page.getByRole("button", { name: /^Pay/ }).click();
}

const holdStatus = async (holdId: string, token: string): Promise<string> => {
  const res = await fetch(`${server.url}/v1/holds/${encodeURIComponent(holdId)}`, { headers: { Authorization: `Bearer ${token}` } });
  return ((await res.json()) as { hold: { status: string } }).hold.status;
};

/**
 * A buyer (`n`) who held one ticket of a new event and paid with the stand-in's card that stays processing:
 * the page says "Payment processing", and the stand-in holds the payment intent of the order.
 */
async function processingPayment(n: number, name: string) {
  const eventId = await createSaleEvent(server.url, await devToken(server.url, `card-org${n}`, "organizer"), { name });
  const token = await devToken(server.url, `card-buyer${n}`, "buyer");
  const buyer = await buyerBrowser();
  const { page } = buyer;
  const holdId = await holdTickets(page, eventId, token, 1);
  await expect.poll(() => page.getByLabel("Card number").count()).toBe(1);
  await payWith(page, "4000 0000 0000 0077"); // the stand-in's pm_standin_processing
  await expect.poll(() => page.textContent("#pay-status")).toContain("Payment processing");
  const orderId = holdId.replace(/^hld_/, "ord_");
  const pi = (await standinState()).intents.find((p) => (p.metadata.breakwater_payment_key ?? "").startsWith(`${orderId}:`));
  return { buyer, page, token, holdId, orderId, pi };
}

/** The bank settles `pi` with `outcome`; Stripe's signed `type` event reaches the server; its answer's `result`. */
async function settleAndDeliver(pi: { id: string } | undefined, outcome: "succeeded" | "failed", type: string): Promise<string> {
  expect((await fetch(`${standin.url}/__settle/${pi?.id}?outcome=${outcome}`, { method: "POST" })).status).toBe(200);
  const deliveries = (await (await fetch(`${standin.url}/__events?payment_intent=${pi?.id}`)).json()) as StandinDelivery[];
  const event = deliveries.find((d) => d.type === type);
  const hook = await fetch(`${server.url}/v1/webhooks/stripe`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Stripe-Signature": event?.signature ?? "" },
    body: event?.payload,
  });
  return ((await hook.json()) as { result: string }).result;
}

describe("card checkout (Stripe.js faked, Stripe's API stood in)", () => {
  it("declined card keeps the hold, an approved card pays once under the order's key, and the page is accessible at 390 and 1280 px", async () => {
    const eventId = await createSaleEvent(server.url, await devToken(server.url, "card-org", "organizer"), { name: "Card Night" });
    const token = await devToken(server.url, "card-buyer", "buyer");
    const buyer = await buyerBrowser();
    const { page } = buyer;

    // The page's policy lets Stripe.js in, and only it; the page carries the publishable key, never the secret.
    const shell = await fetch(`${server.url}/checkout/hld_x`);
    const csp = shell.headers.get("Content-Security-Policy") ?? "";
    expect(csp).toContain("script-src 'self' https://js.stripe.com https://*.js.stripe.com;");
    expect(csp).toContain("connect-src 'self' https://api.stripe.com;");
    expect(csp).toContain("frame-src https://js.stripe.com https://*.js.stripe.com;");
    const shellHtml = await shell.text();
    expect(shellHtml).toContain(`data-stripe-key="${PUBLISHABLE_KEY}"`);
    expect(shellHtml).not.toContain(standin.secretKey);

    const holdId = await holdTickets(page, eventId, token, 2);
    await expect.poll(() => page.textContent("#hold-desc")).toContain("2 tickets");
    // The card form: Stripe.js loaded (from js.stripe.com, under the page's CSP) with the page's key, the
    // Card Element mounted; "Card" is the default and the sandbox's test cards sit beside it (DEV_AUTH).
    await expect.poll(() => page.getByLabel("Card number").count()).toBe(1);
    expect(buyer.stripeLoads()).toBe(1);
    expect(await page.evaluate(() => (globalThis as unknown as { __fakeStripe: { keys: string[] } }).__fakeStripe.keys)).toEqual([
      PUBLISHABLE_KEY,
    ]);
    expect(await page.getByLabel("Card", { exact: true }).isChecked()).toBe(true);
    expect(await page.getByLabel("Test card: approved").count()).toBe(1);
    expect(await page.textContent("#pay-button")).toBe("Pay €2.00");

    for (const width of [390, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      const overflow = Number(await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"));
      expect(overflow, `checkout at ${width} px scrolls sideways`).toBeLessThanOrEqual(0);
      const axe = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
      const bad = axe.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
      expect(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`)).toEqual([]);
      await page.screenshot({ path: path.join(SHOTS, `checkout-card-${width}.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 900 });

    // Picking a sandbox card hides the card form; "Card" brings it back.
    await page.getByLabel("Test card: approved").check();
    expect(await page.locator("#card-field").isHidden()).toBe(true);
    await page.getByLabel("Card", { exact: true }).check();
    expect(await page.locator("#card-field").isVisible()).toBe(true);

    // An incomplete number is refused in the page (announced in the card's alert): nothing reaches Stripe.
    await payWith(page, "4242 4242");
    await expect.poll(() => page.textContent("#card-error")).toContain("incomplete");
    expect(await page.getAttribute("#card-error", "role")).toBe("alert");
    expect((await standinState()).intents).toHaveLength(0);

    // Declined by Stripe: the decline is shown next to the form, the hold is still the buyer's.
    await payWith(page, "4000 0000 0000 0002");
    await expect.poll(() => page.textContent("#pay-error")).toContain("declined");
    expect(await page.textContent("#pay-error")).toContain("still held");
    expect(await holdStatus(holdId, token)).toBe("active");
    expect(await page.isEnabled("#pay-button")).toBe(true);
    // One PaymentMethod so far (none for the incomplete number).
    expect(await page.evaluate(() => (globalThis as unknown as { __fakeStripe: { created: string[] } }).__fakeStripe.created)).toEqual([
      "pm_card_chargeDeclined",
    ]);
    await page.screenshot({ path: path.join(SHOTS, "checkout-card-declined-1280.png"), fullPage: true });

    // Approved: the confirmation with both tickets.
    await payWith(page, "4242 4242 4242 4242");
    await page.waitForURL(/\/orders\/ord_/);
    const orderId = decodeURIComponent(page.url().split("/").pop() ?? "");
    await expect.poll(() => page.locator("li.ticket").count(), { timeout: 10_000 }).toBe(2);
    expect(await page.textContent("#order-title")).toContain("You have tickets");
    expect(await holdStatus(holdId, token)).toBe("sold");

    // What Stripe saw: for this order, two attempts (declined, then paid); exactly one PaymentIntent
    // succeeded, for the hold's total, created under the attempt's key and confirmed once under `<key>:confirm`.
    const state = await standinState();
    const mine = state.intents.filter((pi) => (pi.metadata.breakwater_payment_key ?? "").startsWith(`${orderId}:`));
    expect(mine.map((pi) => pi.status).sort()).toEqual(["requires_payment_method", "succeeded"]);
    const paid = mine.find((pi) => pi.status === "succeeded");
    expect([paid?.amount, paid?.currency, paid?.amount_received]).toEqual([200, "eur", 200]);
    const key = paid?.metadata.breakwater_payment_key ?? "";
    const creates = state.requests.filter((r) => r.method === "POST" && r.path === "/v1/payment_intents" && r.idempotencyKey === key);
    const confirms = state.requests.filter((r) => r.path === `/v1/payment_intents/${paid?.id}/confirm`);
    expect(creates).toHaveLength(1);
    expect(confirms.map((r) => r.idempotencyKey)).toEqual([`${key}:confirm`]);

    expect(buyer.errors).toEqual([]);
    await buyer.context.close();
  });

  it("a payment Stripe leaves processing (202) shows 'Payment processing…' and moves on to the tickets once the webhook settles it", async () => {
    const { buyer, page, token, holdId, orderId, pi } = await processingPayment(2, "Slow Bank Night");
    expect(await holdStatus(holdId, token)).toBe("checking_out");
    expect(page.url()).toContain("/checkout/");

    // The bank settles; Stripe's signed webhook reaches the server; the page follows the order to its tickets.
    expect(pi?.status).toBe("processing");
    expect(await settleAndDeliver(pi, "succeeded", "payment_intent.succeeded")).toBe("paid");
    await page.waitForURL(`${server.url}/orders/${encodeURIComponent(orderId)}`, { timeout: 20_000 });
    await expect.poll(() => page.locator("li.ticket").count(), { timeout: 10_000 }).toBe(1);
    expect(buyer.errors).toEqual([]);
    await buyer.context.close();
  });

  it("a processing payment that then fails says so and gives the hold back for another card", async () => {
    const { buyer, page, token, holdId, pi } = await processingPayment(3, "Failing Bank Night");
    expect(await settleAndDeliver(pi, "failed", "payment_intent.payment_failed")).toBe("reopened");
    await expect.poll(() => page.textContent("#pay-error"), { timeout: 20_000 }).toContain("did not go through");
    expect(await page.textContent("#pay-status")).toBe("");
    expect(await page.isEnabled("#pay-button")).toBe(true);
    expect(await holdStatus(holdId, token)).toBe("active");
    expect(page.url()).toContain("/checkout/");
    expect(buyer.errors).toEqual([]);
    await buyer.context.close();
  });

  it("a card that needs 3-D Secure is refused in words that say so, and the hold stays", async () => {
    const eventId = await createSaleEvent(server.url, await devToken(server.url, "card-org4", "organizer"), { name: "3DS Night" });
    const token = await devToken(server.url, "card-buyer4", "buyer");
    const buyer = await buyerBrowser();
    const { page } = buyer;
    const holdId = await holdTickets(page, eventId, token, 1);
    await expect.poll(() => page.getByLabel("Card number").count()).toBe(1);
    await payWith(page, "4000 0027 6000 3184"); // pm_card_authenticationRequired
    await expect.poll(() => page.textContent("#pay-error")).toContain("3-D Secure");
    expect(await holdStatus(holdId, token)).toBe("active");
    expect(await page.isEnabled("#pay-button")).toBe(true);
    expect(buyer.errors).toEqual([]);
    await buyer.context.close();
  });

  it("when Stripe.js cannot load, the page says so next to the card form and the sandbox still pays locally", async () => {
    const eventId = await createSaleEvent(server.url, await devToken(server.url, "card-org5", "organizer"), { name: "Offline Night" });
    const token = await devToken(server.url, "card-buyer5", "buyer");
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: "UTC", locale: "en-GB" });
    await context.route("https://js.stripe.com/**", (route) => route.abort("internetdisconnected"));
    const page = await context.newPage();
    await holdTickets(page, eventId, token, 1);
    await expect.poll(() => page.textContent("#card-error")).toContain("could not load");
    // The page pays only once it has read the hold (the button then shows the amount): on a loaded machine
    // the click could otherwise come first and do nothing.
    await expect.poll(() => page.textContent("#pay-button"), { timeout: 10_000 }).toMatch(/^Pay €/);
    // Paying by card now says the form is not there; nothing reaches the API's card path.
    await page.getByRole("button", { name: /^Pay/ }).click();
    await expect.poll(() => page.textContent("#card-error")).toContain("not loaded");
    await page.getByLabel("Test card: approved").check();
    await page.getByRole("button", { name: /^Pay/ }).click();
    await page.waitForURL(/\/orders\/ord_/);
    await expect.poll(() => page.locator("li.ticket").count(), { timeout: 10_000 }).toBe(1);
    await context.close();
  });
});

describe("card checkout in the production configuration (no DEV_AUTH)", () => {
  const jwtSecret = "e2e-prod-jwt-secret-0123456789abcdef";
  let prod: TestServer;

  beforeAll(async () => {
    prod = await startTestServer({
      DEV_AUTH: "false",
      JWT_SECRET: jwtSecret,
      STRIPE_SECRET_KEY: standin.secretKey,
      STRIPE_WEBHOOK_SECRET: standin.webhookSecret,
      STRIPE_API_URL: standin.url,
      STRIPE_PUBLISHABLE_KEY: PUBLISHABLE_KEY,
    });
  });

  afterAll(async () => {
    await prod?.stop();
  });

  it("offers the card form and nothing else, and a buyer signed in by the embedding site's JWT pays by card", async () => {
    // The embedding site's tokens (HS256 with JWT_SECRET), as in production: no dev-token route here.
    expect((await fetch(`${prod.url}/v1/auth/dev-token`, { method: "POST", body: "{}" })).status).toBe(404);
    const org = await issueToken({ sub: "prod-org", role: "organizer" }, jwtSecret);
    const token = await issueToken({ sub: "prod-buyer", role: "buyer" }, jwtSecret);
    const eventId = await createSaleEvent(prod.url, org, { name: "Production Night" });
    const buyer = await buyerBrowser();
    const { page } = buyer;
    await page.goto(`${prod.url}/events/${eventId}/sections/ga#token=${encodeURIComponent(token)}`);
    await page.getByLabel("Tickets", { exact: true }).fill("1");
    await page.getByRole("button", { name: "Hold tickets" }).click();
    await page.waitForURL(/\/checkout\/hld_/);
    await expect.poll(() => page.getByLabel("Card number").count()).toBe(1);
    // Card only: no method to pick, no sandbox card.
    expect(await page.locator('#pay-form input[type="radio"]').count()).toBe(0);
    expect(await page.textContent("#pay-form")).not.toContain("Test card");
    for (const width of [390, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      const overflow = Number(await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"));
      expect(overflow, `checkout at ${width} px scrolls sideways`).toBeLessThanOrEqual(0);
      const axe = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
      expect(axe.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => v.id)).toEqual([]);
      await page.screenshot({ path: path.join(SHOTS, `checkout-card-production-${width}.png`), fullPage: true });
    }
    await payWith(page, "4242 4242 4242 4242");
    await page.waitForURL(/\/orders\/ord_/);
    await expect.poll(() => page.locator("li.ticket").count(), { timeout: 10_000 }).toBe(1);
    expect(buyer.errors).toEqual([]);
    await buyer.context.close();
  });
});

import { mkdirSync } from "node:fs";
import path from "node:path";
import AxeBuilder from "@axe-core/playwright";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSaleEvent, devToken, launchChromium, postJson, startTestServer, type TestServer } from "./helpers";

/**
 * The organizer console after the sale, in Debian's Chromium against the local server: check a ticket in
 * by its code (then the same code again), refund one ticket of an order, cancel the event and watch its
 * refunds complete, each through the live page's forms; what the page says is checked against the API.
 */

const SHOTS = process.env.SCREENSHOTS_DIR ?? "test-results/screenshots";

let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  server = await startTestServer();
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

interface Ticket {
  id: string;
  seat: string;
  code: string;
  status: string;
}
interface Order {
  id: string;
  status: string;
  tickets: Ticket[];
}

/** A buyer holds `quantity` GA places and pays for them. */
async function buy(eventId: string, buyer: string, quantity: number): Promise<Order> {
  const token = await devToken(server.url, buyer, "buyer");
  const { hold } = await postJson<{ hold: { id: string } }>(
    server.url,
    `/v1/events/${eventId}/holds`,
    { sectionId: "ga", quantity },
    token,
  );
  const { order } = await postJson<{ order: Order }>(
    server.url,
    "/v1/orders",
    { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } },
    token,
  );
  return order;
}

const text = (page: Page, id: string) => page.locator(`#${id}`).textContent();

describe("organizer console after the sale", () => {
  it("checks a ticket in once, refunds one ticket, cancels the event and shows its refunds", async () => {
    const organizer = await devToken(server.url, "console-org", "organizer");
    const eventId = await createSaleEvent(server.url, organizer, { name: "After the sale", capacity: 20 });
    const first = await buy(eventId, "console-buyer-1", 2);
    const second = await buy(eventId, "console-buyer-2", 1);

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: "UTC", locale: "en-GB" });
    await context.addInitScript((t) => localStorage.setItem("bw.token.organizer", t), organizer);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${server.url}/organizer/events/${eventId}`);
    await expect.poll(() => text(page, "sold"), { timeout: 15_000 }).toBe("3");

    // Check-in: the first scan admits, the second is refused with the first time.
    const [kept, refunded] = first.tickets as [Ticket, Ticket];
    await page.getByLabel(/Ticket code/).fill(kept.code);
    await page.getByRole("button", { name: "Check in" }).click();
    await expect.poll(() => text(page, "checkin-result")).toContain(`Checked in: ${kept.seat}`);
    await page.getByLabel(/Ticket code/).fill(kept.code);
    await page.getByRole("button", { name: "Check in" }).click();
    await expect.poll(() => text(page, "checkin-result")).toContain("Already checked in");
    await page.getByLabel(/Ticket code/).fill("not-a-ticket-code");
    await page.getByRole("button", { name: "Check in" }).click();
    await expect.poll(() => text(page, "checkin-result")).toBe("No ticket of this event has that code.");

    // The check-in list downloads as CSV and marks the ticket used.
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: /check-in list/ }).click()]);
    const csv = await (await download.createReadStream()).toArray();
    const lines = Buffer.concat(csv as Buffer[])
      .toString("utf8")
      .trim()
      .split(/\r?\n/);
    expect(lines).toHaveLength(1 + 3);
    expect(lines.find((l) => l.includes(kept.id))).toContain("used");

    // Refund one ticket of the first order: the page says so; the API agrees; the place is back on sale.
    await page.getByLabel("Order id").fill(first.id);
    await page.getByLabel(/Ticket ids/).fill(refunded.id);
    await page.getByLabel(/Reason/).fill("changed plans");
    await page.getByRole("button", { name: "Refund" }).click();
    await expect.poll(() => text(page, "refund-result"), { timeout: 15_000 }).toContain("partially refunded: 1 of 2");
    const buyerToken = await devToken(server.url, "console-buyer-1", "buyer");
    const after = (await (
      await fetch(`${server.url}/v1/orders/${encodeURIComponent(first.id)}`, { headers: { Authorization: `Bearer ${buyerToken}` } })
    ).json()) as {
      order: Order;
    };
    expect(after.order.status).toBe("partially_refunded");
    expect(after.order.tickets.map((t) => [t.id, t.status])).toEqual([
      [kept.id, "used"],
      [refunded.id, "void"],
    ]);
    await expect.poll(() => text(page, "sold"), { timeout: 15_000 }).toBe("2");
    // A checked-in ticket is not refundable.
    await page.getByLabel(/Ticket ids/).fill(kept.id);
    await page.getByRole("button", { name: "Refund" }).click();
    await expect.poll(() => text(page, "refund-result")).toMatch(/checked in/i);

    const axe = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
    expect(axe.violations.map((v) => `${v.id} (${v.impact})`)).toEqual([]);
    for (const width of [390, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      const overflow = Number(await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"));
      expect(overflow, `scrolls sideways at ${width} px`).toBeLessThanOrEqual(0);
      await page.screenshot({ path: path.join(SHOTS, `organizer-after-sale-${width}.png`), fullPage: true });
    }

    // Cancel: not without the confirmation; then the refunds of the orders still valid complete.
    await page.getByRole("button", { name: "Cancel the event" }).click();
    await expect.poll(() => text(page, "cancel-result")).toContain("Tick the box");
    await page.getByLabel(/I want to cancel/).check();
    await page.getByRole("button", { name: "Cancel the event" }).click();
    await expect.poll(() => text(page, "cancel-result"), { timeout: 60_000, interval: 500 }).toMatch(/(\d+) of \1 order\(s\) refunded/);
    const event = (await (await fetch(`${server.url}/v1/events/${eventId}`)).json()) as { event: { status: string } };
    expect(event.event.status).toBe("cancelled");
    const secondToken = await devToken(server.url, "console-buyer-2", "buyer");
    const secondAfter = (await (
      await fetch(`${server.url}/v1/orders/${encodeURIComponent(second.id)}`, { headers: { Authorization: `Bearer ${secondToken}` } })
    ).json()) as {
      order: Order;
    };
    expect(secondAfter.order.status).toBe("refunded");
    expect(errors).toEqual([]);
    await context.close();
  }, 180_000);
});

import jsQR from "jsqr";
import type { Browser } from "playwright-core";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSaleEvent, devToken, launchChromium, postJson, startTestServer, type TestServer } from "./helpers";

/**
 * The QR code of a ticket, end to end: a buyer pays through the API of `npm run serve`'s server, opens the
 * confirmation page in Debian's Chromium (the page fetches GET /v1/tickets/:id/qr.svg with the buyer's token
 * and shows it from a blob: URL, under the page's own CSP), and the screenshot of each rendered QR code is
 * decoded in Node with jsQR: the text must be that ticket's signed code, which then checks in once at the
 * event's gate.
 */

let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  server = await startTestServer();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

describe("ticket QR code", () => {
  it("renders on the confirmation page in Chromium and decodes (jsQR) to the ticket's code", async () => {
    const organizer = await devToken(server.url, "org-qr-e2e", "organizer");
    const eventId = await createSaleEvent(server.url, organizer, {
      name: "QR Night",
      sections: [{ id: "a", name: "Block A", kind: "seated", price: 4000, rows: [{ id: "1", seats: 4 }] }],
    });
    const event = { id: eventId };
    const buyer = await devToken(server.url, "buyer-qr-e2e", "buyer");
    const { hold } = await postJson<{ hold: { id: string } }>(
      server.url,
      `/v1/events/${event.id}/holds`,
      { sectionId: "a", seats: ["1-2", "1-3"] },
      buyer,
    );
    const { order } = await postJson<{ order: { id: string; tickets: { id: string; seat: string; code: string }[] } }>(
      server.url,
      "/v1/orders",
      { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } },
      buyer,
    );
    expect(order.tickets).toHaveLength(2);

    // A phone-like screen (2 device pixels per CSS pixel); the token is handed over in the fragment.
    const context = await browser.newContext({ viewport: { width: 800, height: 900 }, deviceScaleFactor: 2 });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("response", (r) => {
      if (r.status() >= 400) errors.push(`${r.status()} ${new URL(r.url()).pathname}`);
    });
    await page.goto(`${server.url}/orders/${encodeURIComponent(order.id)}#token=${buyer}`);
    const images = page.locator("li.ticket img[alt^='QR code']");
    await expect.poll(() => images.count()).toBe(2);

    for (let i = 0; i < 2; i++) {
      const img = images.nth(i);
      // Loaded (the blob's SVG decoded): an <img> has a natural width only then.
      await expect.poll(() => img.evaluate((el) => Number((el as unknown as { naturalWidth: number }).naturalWidth))).toBeGreaterThan(0);
      // Which ticket this slot shows: the code printed under it on the page.
      const shown = (await img.locator("xpath=ancestor::li[1]//code").textContent())?.trim();
      const ticket = order.tickets.find((t) => t.code === shown);
      expect(ticket, `slot ${i} shows a ticket of the order`).toBeDefined();

      const png = PNG.sync.read(await img.screenshot());
      const decoded = jsQR(new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length), png.width, png.height);
      expect(decoded, `QR code ${i} decodes`).not.toBeNull();
      expect(decoded?.data).toBe(ticket?.code);
    }
    expect(errors).toEqual([]);
    await context.close();

    // The decoded text is a working ticket: it checks in once at the gate.
    const first = await fetch(`${server.url}/v1/events/${event.id}/check-ins`, {
      method: "POST",
      headers: { Authorization: `Bearer ${organizer}`, "Content-Type": "application/json" },
      body: JSON.stringify({ code: order.tickets[0]?.code }),
    });
    expect(first.status).toBe(200);
  });
});

import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import jsQR from "jsqr";
import type { Browser } from "playwright-core";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer } from "../../scripts/serve";
import { freePort, launchChromium, testServerVars } from "./helpers";

/**
 * The QR code of a ticket, end to end: a buyer pays through the API of `npm run serve`'s server, opens the
 * confirmation page in Debian's Chromium (the page fetches GET /v1/tickets/:id/qr.svg with the buyer's token
 * and shows it from a blob: URL, under the page's own CSP), and the screenshot of each rendered QR code is
 * decoded in Node with jsQR: the text must be that ticket's signed code, which then checks in once at the
 * event's gate.
 */

let server: Awaited<ReturnType<typeof startServer>>;
let browser: Browser;
let stateDir: string;

beforeAll(async () => {
  stateDir = mkdtempSync(path.join(os.tmpdir(), "bw-e2e-qr-"));
  server = await startServer({ port: await freePort(), stateDir, cron: false, log: false, build: false, vars: testServerVars() });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

async function api<T>(pathname: string, init: { method?: string; token?: string; json?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = {};
  if (init.token) headers.Authorization = `Bearer ${init.token}`;
  if (init.json !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`${server.url}${pathname}`, {
    method: init.method ?? "GET",
    headers,
    ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
  });
  if (!res.ok) throw new Error(`${init.method ?? "GET"} ${pathname} → ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

const devToken = async (sub: string, role: string) =>
  (await api<{ token: string }>("/v1/auth/dev-token", { method: "POST", json: { sub, role } })).token;

describe("ticket QR code", () => {
  it("renders on the confirmation page in Chromium and decodes (jsQR) to the ticket's code", async () => {
    const organizer = await devToken("org-qr-e2e", "organizer");
    const now = Date.now();
    const { event } = await api<{ event: { id: string } }>("/v1/events", {
      method: "POST",
      token: organizer,
      json: {
        name: "QR Night",
        venue: "Loopback Hall",
        startsAt: new Date(now + 7 * 86_400_000).toISOString(),
        saleStartsAt: new Date(now - 60_000).toISOString(),
        currency: "EUR",
        perCustomerLimit: 4,
        sections: [{ id: "a", name: "Block A", kind: "seated", price: 4000, rows: [{ id: "1", seats: 4 }] }],
      },
    });
    const buyer = await devToken("buyer-qr-e2e", "buyer");
    const { hold } = await api<{ hold: { id: string } }>(`/v1/events/${event.id}/holds`, {
      method: "POST",
      token: buyer,
      json: { sectionId: "a", seats: ["1-2", "1-3"] },
    });
    const { order } = await api<{ order: { id: string; tickets: { id: string; seat: string; code: string }[] } }>("/v1/orders", {
      method: "POST",
      token: buyer,
      json: { holdId: hold.id, payment: { method: "sandbox", token: "tok_ok" } },
    });
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

import { existsSync, mkdirSync } from "node:fs";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSaleEvent, devToken, launchChromium, startTestServer, type TestServer } from "./helpers";

/**
 * The operations page in a real browser: Debian's Chromium driven by Playwright, against the local
 * server (workerd via miniflare), while a short load runs. Keeps a screenshot in test-results/.
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

describe("static files (Workers Static Assets)", () => {
  it("serves the operations page, its script and style, the Grafana dashboard and the storefront's files with their headers", async () => {
    const page = await fetch(`${server.url}/ops`);
    expect(page.status).toBe(200);
    expect(page.headers.get("Content-Type")).toContain("text/html");
    expect(page.headers.get("Content-Security-Policy")).toContain("script-src 'self'");
    expect(page.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(await page.text()).toContain('src="/ops.js"');
    const script = await fetch(`${server.url}/ops.js`);
    expect(script.headers.get("Content-Type")).toContain("javascript");
    await script.arrayBuffer();
    const style = await fetch(`${server.url}/static/app.css`);
    expect([style.status, style.headers.get("Content-Type"), style.headers.get("Cache-Control")]).toEqual([
      200,
      "text/css; charset=utf-8",
      "public, max-age=60, stale-while-revalidate=600",
    ]);
    await style.arrayBuffer();
    const bw = await fetch(`${server.url}/static/bw.js`);
    expect(bw.headers.get("Content-Type")).toContain("javascript");
    expect(await bw.text()).toContain("export async function api");
    const dash = (await (await fetch(`${server.url}/grafana-dashboard.json`)).json()) as { title: string; panels: unknown[] };
    expect(dash.title).toBe("Breakwater");
    expect(dash.panels.length).toBeGreaterThan(5);
    // The API keeps its routes (run_worker_first), and unknown API paths stay JSON problems.
    const missing = await fetch(`${server.url}/v1/nothing-here`);
    expect([missing.status, missing.headers.get("Content-Type")]).toEqual([404, "application/problem+json"]);
    await missing.arrayBuffer();
  });
});

describe("operations page", () => {
  it("loads, shows live figures during a short load, and keeps a screenshot", async () => {
    const event = { id: await createSaleEvent(server.url, await devToken(server.url, "e2e-org", "organizer")) };

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${server.url}/ops`);
    await expect(page.title()).resolves.toContain("Breakwater");

    // A short, bounded load on the read path while the page polls.
    const stopAt = Date.now() + 6_000;
    const load = (async () => {
      let n = 0;
      while (Date.now() < stopAt && n < 20_000) {
        await Promise.all(Array.from({ length: 20 }, () => fetch(`${server.url}/v1/events/${event.id}`).then((r) => r.arrayBuffer())));
        n += 20;
      }
      return n;
    })();
    await expect.poll(async () => Number(await page.textContent("#samples")), { timeout: 20_000, interval: 250 }).toBeGreaterThanOrEqual(3);
    await expect.poll(async () => Number(await page.textContent("#rps")), { timeout: 20_000, interval: 250 }).toBeGreaterThan(0);
    const sent = await load;
    expect(sent).toBeGreaterThan(100);

    const rps = Number(await page.textContent("#rps"));
    expect(rps).toBeGreaterThan(0);
    expect(await page.textContent("#hit-ratio")).toMatch(/^\d+(\.\d)? %$/);
    expect(await page.textContent("#status")).toContain("live");
    expect(await page.textContent("#routes")).toContain("/v1/events/:id");
    expect(errors).toEqual([]);

    mkdirSync("test-results", { recursive: true });
    await page.screenshot({ path: "test-results/ops-page.png", fullPage: true });
    expect(existsSync("test-results/ops-page.png")).toBe(true);
  });
});

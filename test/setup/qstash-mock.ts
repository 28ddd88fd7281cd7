import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { TestProject } from "vitest/node";

/**
 * A loopback stand-in for the QStash publish API (`POST /v2/publish/<destination>`), so the webhook
 * publisher is tested over real HTTP: it records each publish (destination, headers, body) and answers
 * like QStash (`{ messageId }`). `GET /__published` lists what it received; `POST /__fail?n=2` makes the
 * next n publishes fail with 500 (to test retries).
 */

/** What the stand-in gives the tests. */
export type QStashMockInfo = { url: string };

declare module "vitest" {
  export interface ProvidedContext {
    qstashMock: QStashMockInfo;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const published: { destination: string; headers: Record<string, string>; body: string }[] = [];
  let failNext = 0;
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://x");
      if (req.method === "GET" && url.pathname === "/__published") {
        res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(published));
        return;
      }
      if (req.method === "POST" && url.pathname === "/__fail") {
        failNext = Number(url.searchParams.get("n") ?? 1);
        res.writeHead(204).end();
        return;
      }
      if (req.method === "POST" && url.pathname.startsWith("/v2/publish/")) {
        if (req.headers.authorization !== "Bearer test-qstash-token") {
          res.writeHead(401, { "Content-Type": "application/json" }).end(JSON.stringify({ error: "invalid token" }));
          return;
        }
        if (failNext > 0) {
          failNext--;
          res.writeHead(500, { "Content-Type": "application/json" }).end(JSON.stringify({ error: "internal" }));
          return;
        }
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k.toLowerCase()] = v;
        published.push({ destination: decodeURIComponent(url.pathname.slice("/v2/publish/".length)), headers, body });
        res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ messageId: `msg_${published.length}` }));
        return;
      }
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  project.provide("qstashMock", { url: `http://127.0.0.1:${port}` });
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}

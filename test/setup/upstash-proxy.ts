import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createClient, ErrorReply } from "redis";
import type { TestProject } from "vitest/node";

/**
 * A loopback server speaking the Upstash Redis REST protocol, in front of the real local Redis, so the
 * Upstash rate-limit store is tested against Redis itself (its Lua, its atomicity) and not a fake.
 *
 * - `POST /` with a JSON command array (`["EVALSHA", sha, "1", key, …]`) → `{"result": …}`;
 * - `POST /pipeline` with an array of command arrays → `[{"result": …} | {"error": …}, …]`;
 * - errors → HTTP 400 `{"error": "NOSCRIPT …"}` (what `@upstash/redis` turns into `UpstashError`);
 * - `Authorization: Bearer <token>` required (401 otherwise);
 * - `Upstash-Encoding: base64` → string results base64-encoded, as the hosted service does;
 * - `GET /__stats` (test introspection) → commands seen, by name.
 *
 * Runs as a vitest globalSetup (Node side) and hands `{ url, token, redis }` to the workers project with
 * `provide("upstashProxy")`; `redis: false` when nothing listens on REDIS_URL (default 127.0.0.1:6379),
 * so the suites that need it can say so instead of failing on a machine without Redis.
 */

/** What the proxy gives the tests (a type alias, not an interface: it must fit miniflare's JSON bindings). */
export type UpstashProxyInfo = {
  url: string;
  token: string;
  /** Whether Redis answered when the proxy started. */
  redis: boolean;
};

declare module "vitest" {
  export interface ProvidedContext {
    upstashProxy: UpstashProxyInfo;
  }
}

type Reply = string | number | null | Reply[];

/** A RESP reply as JSON (Upstash's shape); strings base64 when asked. */
function toJson(reply: unknown, base64: boolean): Reply {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === "number") return reply;
  if (typeof reply === "bigint") return Number(reply);
  if (typeof reply === "string") return base64 ? Buffer.from(reply, "utf8").toString("base64") : reply;
  if (Buffer.isBuffer(reply)) return base64 ? reply.toString("base64") : reply.toString("utf8");
  if (Array.isArray(reply)) return reply.map((r) => toJson(r, base64));
  return String(reply);
}

const isCommand = (v: unknown): v is (string | number)[] =>
  Array.isArray(v) && v.length > 0 && v.every((a) => typeof a === "string" || typeof a === "number");

async function body(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "null");
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(payload));
}

/** Starts the proxy; `close()` stops it and its Redis connection. */
export async function startUpstashProxy(
  opts: { redisUrl?: string; token?: string } = {},
): Promise<UpstashProxyInfo & { close(): Promise<void> }> {
  const token = opts.token ?? randomUUID();
  const client = createClient({
    url: opts.redisUrl ?? "redis://127.0.0.1:6379",
    socket: { connectTimeout: 1_000, reconnectStrategy: false },
  });
  client.on("error", () => {}); // a refused connection is reported by connect(); later errors fail their command
  let redis = true;
  try {
    await client.connect();
  } catch {
    redis = false;
  }
  const seen = new Map<string, number>();

  const run = async (cmd: (string | number)[], base64: boolean): Promise<{ result: Reply } | { error: string }> => {
    const name = String(cmd[0]).toUpperCase();
    const full = name === "SCRIPT" ? `${name} ${String(cmd[1]).toUpperCase()}` : name;
    seen.set(full, (seen.get(full) ?? 0) + 1);
    if (!redis) return { error: "ERR redis is not reachable from the test proxy" };
    try {
      return { result: toJson(await client.sendCommand(cmd.map(String)), base64) };
    } catch (err) {
      return { error: err instanceof ErrorReply ? err.message : `ERR ${String(err)}` };
    }
  };

  const server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? "/", "http://proxy").pathname;
      if (req.method === "GET" && path === "/__stats") return send(res, 200, Object.fromEntries(seen));
      if (req.headers.authorization !== `Bearer ${token}`) return send(res, 401, { error: "Unauthorized" });
      if (req.method !== "POST") return send(res, 405, { error: "ERR only POST" });
      const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
      let payload: unknown;
      try {
        payload = await body(req);
      } catch {
        return send(res, 400, { error: "ERR body is not JSON" });
      }
      if (path === "/") {
        if (!isCommand(payload)) return send(res, 400, { error: "ERR expected a JSON array command" });
        const out = await run(payload, base64);
        return send(res, "error" in out ? 400 : 200, out);
      }
      if (path === "/pipeline") {
        if (!Array.isArray(payload) || !payload.every(isCommand)) return send(res, 400, { error: "ERR expected an array of commands" });
        const out = [];
        for (const cmd of payload) out.push(await run(cmd, base64));
        return send(res, 200, out);
      }
      return send(res, 404, { error: `ERR no route ${path}` });
    })().catch((err: unknown) => send(res, 500, { error: `ERR ${String(err)}` }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    redis,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (redis) await client.close();
    },
  };
}

/** vitest globalSetup: start the proxy for the workers project, stop it after the run. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const proxy = await startUpstashProxy({ redisUrl: process.env.REDIS_URL });
  // A missing Redis fails the run (a skipped adapter test would hide a broken adapter); skipping is a
  // choice made out loud.
  if (!proxy.redis && process.env.REDIS_TESTS !== "skip") {
    await proxy.close();
    throw new Error(
      `Redis is not reachable at ${process.env.REDIS_URL ?? "redis://127.0.0.1:6379"}: start it (.ci/run shows how) or set REDIS_TESTS=skip to skip the Upstash adapter tests against it.`,
    );
  }
  project.provide("upstashProxy", { url: proxy.url, token: proxy.token, redis: proxy.redis });
  return () => proxy.close();
}

/**
 * The baselines of bench/holds behind an HTTP layer, as a team would deploy them: a Node HTTP server
 * (one process) answering `POST /hold` with one seat from PostgreSQL (`FOR UPDATE SKIP LOCKED`) or Redis
 * (a Lua script). `node bench/lib/baseline-server.ts <pg|redis> <port> <section>`; prints "ready".
 * No auth, no validation beyond JSON, no per-customer limit: it is the floor of such a service's cost.
 */
import http from "node:http";
import postgres from "postgres";
import { createClient } from "redis";

const [backend, portArg, section = "hot"] = process.argv.slice(2);
const port = Number(portArg);
const POOL = 32;

type Hold = (holdId: string) => Promise<string | null>;
let hold: Hold;
if (backend === "pg") {
  const sql = postgres({ host: "127.0.0.1", port: 5432, user: "postgres", database: "breakwater_bench", max: POOL, onnotice: () => {} });
  hold = async (holdId) => {
    const rows = await sql.begin(
      (tx) => tx`
      UPDATE seats SET status = 'held', hold_id = ${holdId}, held_until = now() + interval '10 minutes'
      WHERE id IN (SELECT id FROM seats WHERE section = ${section} AND status = 'available' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING id`,
    );
    return (rows[0]?.id as string | undefined) ?? null;
  };
} else if (backend === "redis") {
  const clients = await Promise.all(Array.from({ length: POOL }, () => createClient({ url: "redis://127.0.0.1:6379" }).connect()));
  const sha = await (clients[0] as (typeof clients)[number]).scriptLoad(
    "local seat = redis.call('LPOP', KEYS[1]) if not seat then return false end redis.call('HSET', KEYS[2], seat, ARGV[1]) redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1]) return seat",
  );
  let rr = 0;
  hold = async (holdId) => {
    const c = clients[rr++ % clients.length] as (typeof clients)[number];
    const seat = await c.evalSha(sha, {
      keys: [`bench:${section}:available`, `bench:${section}:held`, `bench:${section}:expiry`],
      arguments: [holdId, String(Date.now() + 600_000)],
    });
    return typeof seat === "string" ? seat : null;
  };
} else {
  throw new Error("usage: baseline-server.ts <pg|redis> <port> [section]");
}

let n = 0;
http
  .createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/hold") {
        res.writeHead(404).end();
        return;
      }
      try {
        JSON.parse(body || "{}");
      } catch {
        res.writeHead(400).end();
        return;
      }
      hold(`h${process.pid}-${n++}`).then(
        (seat) => {
          res
            .writeHead(seat ? 201 : 409, { "Content-Type": "application/json" })
            .end(JSON.stringify(seat ? { seat } : { code: "sold_out" }));
        },
        (err: unknown) => {
          res.writeHead(500, { "Content-Type": "application/json" }).end(JSON.stringify({ error: String(err) }));
        },
      );
    });
  })
  .listen(port, "127.0.0.1", () => console.log("ready"));

/**
 * The baselines of bench/holds and bench/orders behind an HTTP layer, as a team would deploy them: a Node
 * HTTP server (one process) answering `POST /hold` with one seat from PostgreSQL (`FOR UPDATE SKIP
 * LOCKED`) or Redis (a Lua script), and, for PostgreSQL, `POST /checkout` `{"holdId"}`: one transaction
 * that marks the hold's seat sold and inserts the order row and its ticket row (tables `orders` and
 * `tickets`, created by bench/orders). `node bench/lib/baseline-server.ts <pg|redis> <port> <section>`;
 * prints "ready". Env BASELINE_POOL: PostgreSQL connections (or Redis clients), default 32. No auth, no validation beyond JSON, no per-customer limit, no payment: it is the floor of
 * such a service's cost.
 */
import http from "node:http";
import postgres from "postgres";
import { createClient } from "redis";

const [backend, portArg, section = "hot"] = process.argv.slice(2);
const port = Number(portArg);
const POOL = Math.max(1, Math.min(256, Number(process.env.BASELINE_POOL ?? 32) || 32));

type Hold = (holdId: string) => Promise<string | null>;
let hold: Hold;
/** Sells a held seat: its order and ticket rows, in one transaction. False when the hold is not held. */
let checkout: ((holdId: string) => Promise<boolean>) | undefined;
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
  checkout = async (holdId) =>
    sql.begin(async (tx) => {
      const [seat] = await tx`UPDATE seats SET status = 'sold' WHERE hold_id = ${holdId} AND status = 'held' RETURNING id`;
      if (!seat) return false;
      const orderId = `o-${holdId}`;
      await tx`INSERT INTO orders (id, hold_id, total, created_at) VALUES (${orderId}, ${holdId}, 4500, now())`;
      await tx`INSERT INTO tickets (id, order_id, seat, code) VALUES (${`t-${holdId}`}, ${orderId}, ${seat.id as string}, ${`c-${holdId}`})`;
      return true;
    });
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
      let parsed: { holdId?: unknown };
      try {
        parsed = (JSON.parse(body || "{}") ?? {}) as { holdId?: unknown };
      } catch {
        res.writeHead(400).end();
        return;
      }
      const answer = (status: number, doc: unknown) =>
        res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(doc));
      const failed = (err: unknown) => answer(500, { error: String(err) });
      if (req.method === "POST" && req.url === "/hold") {
        const holdId = `h${process.pid}-${n++}`;
        hold(holdId).then((seat) => (seat ? answer(201, { seat, holdId }) : answer(409, { code: "sold_out" })), failed);
      } else if (req.method === "POST" && req.url === "/checkout" && checkout && typeof parsed.holdId === "string") {
        const holdId = parsed.holdId;
        checkout(holdId).then(
          (sold) => (sold ? answer(201, { orderId: `o-${holdId}` }) : answer(409, { code: "hold_not_active" })),
          failed,
        );
      } else res.writeHead(404).end();
    });
  })
  .listen(port, "127.0.0.1", () => console.log("ready"));

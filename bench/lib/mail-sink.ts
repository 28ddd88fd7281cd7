/**
 * A stand-in for the HTTP e-mail API (lib/mail-sender.ts `httpMailSender`, Resend's `POST /emails`), so a
 * benchmark measures the mail path production runs (one HTTP call per mail) rather than the local
 * mailbox, whose KV writes cost far more locally than anything a real provider call costs the Worker.
 * It answers 200 to each well-formed mail and counts distinct `Idempotency-Key`s (a retried send counts once).
 */
import http from "node:http";

export interface MailSink {
  /** The vars that point Breakwater's mail sender at this sink. */
  env: { MAIL_API_URL: string; MAIL_API_KEY: string };
  /** Distinct mails received. */
  received(): number;
  /** Forgets the mails received (between runs). */
  reset(): void;
  close(): Promise<void>;
}

const KEY = "bench-mail-sink";

async function startMailSink(port: number): Promise<MailSink> {
  const ids = new Set<string>();
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => {
      const id = req.headers["idempotency-key"];
      let to: unknown;
      try {
        to = (JSON.parse(body) as { to?: unknown }).to;
      } catch {
        to = undefined;
      }
      const ok = req.method === "POST" && req.url === "/emails" && req.headers.authorization === `Bearer ${KEY}`;
      if (!ok || typeof id !== "string" || !Array.isArray(to)) {
        res.writeHead(422, { "Content-Type": "application/json" }).end('{"message":"not a mail"}');
        return;
      }
      ids.add(id);
      res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ id }));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    env: { MAIL_API_URL: `http://127.0.0.1:${port}`, MAIL_API_KEY: KEY },
    received: () => ids.size,
    reset: () => ids.clear(),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * The mail path a benchmark measures, from `MAIL`: `sink` (default) sends each mail over HTTP to a sink on
 * `port`, as production sends to its provider; `mailbox` keeps the local mailbox (KV), as `npm run serve`
 * does. Null for `mailbox`. Mail goes out only to buyers whose id is an e-mail address ({@link buyerId}).
 */
export async function benchMail(port: number): Promise<MailSink | null> {
  const mode = process.env.MAIL ?? "sink";
  if (mode !== "sink" && mode !== "mailbox") throw new Error(`MAIL must be sink or mailbox, not ${mode}`);
  return mode === "sink" ? startMailSink(port) : null;
}

/** A benchmark buyer's user id: an e-mail address, so the HTTP mail sender has someone to write to. */
export const buyerId = (prefix: string, i: number): string => `${prefix}-${i}@bench.example`;

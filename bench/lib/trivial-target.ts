/**
 * The cheapest HTTP/1.1 server this machine can run, used to measure the load generator's own ceiling:
 * a raw TCP server that answers every request head it sees with one canned keep-alive response (GET
 * only; no parsing beyond finding the blank line). `node bench/lib/trivial-target.ts <port>` prints
 * "ready"; {@link startTrivialTarget} runs it in a child process so it gets its own core.
 */
import { spawn } from "node:child_process";
import net from "node:net";

const RESPONSE = Buffer.from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
const END = Buffer.from("\r\n\r\n");

/** Counts complete request heads in `buf` from `from`; returns the count and where the unread tail starts. */
function heads(buf: Buffer, from: number): { n: number; rest: number } {
  let n = 0;
  let at = from;
  for (let i = buf.indexOf(END, at); i !== -1; i = buf.indexOf(END, at)) {
    n++;
    at = i + 4;
  }
  return { n, rest: at };
}

/** Starts the trivial target in a child process on `port`; resolves once it listens. */
export async function startTrivialTarget(port: number): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, [import.meta.filename, String(port)], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`trivial target exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill("SIGTERM") };
}

const isMain = process.argv[1] === import.meta.filename;
if (isMain) {
  const port = Number(process.argv[2] ?? 8790);
  net
    .createServer({ noDelay: true }, (socket) => {
      let pending: Buffer = Buffer.alloc(0);
      socket.on("data", (chunk: Buffer) => {
        const buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        const { n, rest } = heads(buf, 0);
        pending = rest < buf.length ? buf.subarray(rest) : Buffer.alloc(0);
        if (n === 1) socket.write(RESPONSE);
        else if (n > 1) socket.write(Buffer.concat(Array.from({ length: n }, () => RESPONSE)));
      });
      socket.on("error", () => socket.destroy());
    })
    .listen(port, "127.0.0.1", () => console.log("ready"));
  process.on("SIGTERM", () => process.exit(0));
}

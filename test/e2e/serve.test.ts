import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startServer } from "../../scripts/serve";
import { freePort, testServerVars } from "./helpers";

/** The local server (`npm start`, `npm run serve`) answers only once its databases have their schema. */

const stateDir = mkdtempSync(path.join(os.tmpdir(), "bw-serve-"));
let server: Awaited<ReturnType<typeof startServer>> | undefined;

afterAll(async () => {
  await server?.stop();
  rmSync(stateDir, { recursive: true, force: true });
});

describe("scripts/serve.ts", () => {
  it("opens its port after the migrations: the very first answer is the (empty) catalog, not an error", async () => {
    const port = await freePort();
    const answers: { status: number; body: string }[] = [];
    let starting = true;
    // Knock on the port from the moment the server starts until it says it is up.
    const knock = (async () => {
      while (starting) {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/v1/events`);
          answers.push({ status: res.status, body: await res.text() });
        } catch {
          // Not listening yet.
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    server = await startServer({ port, stateDir, cron: false, log: false, build: false, vars: testServerVars() });
    starting = false;
    await knock;
    const after = await fetch(`${server.url}/v1/events`);
    answers.push({ status: after.status, body: await after.text() });
    expect(answers[0]).toEqual({ status: 200, body: '{"events":[]}' });
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
  });
});

import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { startServer } from "../../scripts/serve";
import { freePort, testServerVars } from "./helpers";

/** The served OpenAPI document passes Redocly's recommended rules (redocly.yaml) with no error. */

const root = path.resolve(import.meta.dirname, "../..");
const dir = mkdtempSync(path.join(os.tmpdir(), "bw-openapi-"));
let server: Awaited<ReturnType<typeof startServer>> | undefined;

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Problem {
  ruleId: string;
  severity: "error" | "warn";
  message: string;
  location: { pointer: string }[];
}

describe("GET /openapi.json", () => {
  it("lints clean: 0 errors with Redocly's recommended rules, every operation named and secured", async () => {
    server = await startServer({
      port: await freePort(),
      stateDir: path.join(dir, "state"),
      cron: false,
      log: false,
      build: false,
      vars: testServerVars(),
    });
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { operationId?: string; security?: unknown[] }>>;
    };
    const file = path.join(dir, "openapi.json");
    writeFileSync(file, JSON.stringify(doc));
    const ops = Object.values(doc.paths).flatMap((p) => Object.values(p));
    expect(ops.length).toBeGreaterThan(20);
    expect(ops.filter((o) => !o.operationId || !Array.isArray(o.security))).toEqual([]);

    const run = await promisify(execFile)(
      path.join(root, "node_modules/.bin/redocly"),
      ["lint", file, "--config", path.join(root, "redocly.yaml"), "--format", "json"],
      { cwd: root, maxBuffer: 16 << 20 },
    ).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? "" }));
    const { problems } = JSON.parse(run.stdout) as { problems: Problem[] };
    const errors = problems.filter((p) => p.severity === "error").map((p) => `${p.ruleId} ${p.location[0]?.pointer}: ${p.message}`);
    expect(errors).toEqual([]);
  });
});

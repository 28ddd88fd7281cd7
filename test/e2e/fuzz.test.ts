import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuzz } from "../../scripts/fuzz";
import { startServer } from "../../scripts/serve";
import { freePort, testServerVars } from "./helpers";

/** A small run of `npm run fuzz` (which sends 5,000): schema-derived bad requests against a real server. */

const stateDir = mkdtempSync(path.join(os.tmpdir(), "bw-fuzz-"));
const vars = testServerVars({ RATE_LIMITS: "off" });
let server: Awaited<ReturnType<typeof startServer>> | undefined;

beforeAll(async () => {
  server = await startServer({ port: await freePort(), stateDir, cron: false, log: false, build: false, vars });
});
afterAll(async () => {
  await server?.stop();
  rmSync(stateDir, { recursive: true, force: true });
});

describe("fuzzing the API from its OpenAPI document", () => {
  it("answers every bad request with a 4xx problem document and changes nothing", async () => {
    if (!server) throw new Error("server not started");
    const report = await fuzz(server.url, { requests: 400, seed: Date.now() % 100_000, concurrency: 4, jwtSecret: vars.JWT_SECRET });
    expect(report.requests).toBe(400);
    expect(report.serverErrors).toEqual([]);
    expect(report.nonProblem).toEqual([]);
    expect(report.acceptedUnsafe).toEqual([]);
    expect(report.transportErrors).toEqual([]);
    expect(report.stateChanged).toEqual([]);
    // Every answer was a 4xx, and the run reached validation, auth and routing alike.
    const statuses = Object.keys(report.histogram).map(Number);
    expect(statuses.every((s) => s >= 400 && s < 500)).toBe(true);
    expect(report.histogram[400]).toBeGreaterThan(50);
    expect(report.histogram[401]).toBeGreaterThan(0);
    expect(report.byKind.body).toBeGreaterThan(100);
  });
});

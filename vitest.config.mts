import { existsSync } from "node:fs";
import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** Local-only secrets and vars for tests (never used in production). */
const testVars = {
  DEV_AUTH: "true",
  REQUEST_LOG: "off",
  // Route tests race hundreds of buyers from one address; rate limiting has its own tests (which set limits).
  RATE_LIMITS: "off",
  JWT_SECRET: "test-jwt-secret-0123456789abcdef",
  SIGNING_SECRET: "test-signing-secret-0123456789abcdef",
  QSTASH_TOKEN: "test-qstash-token",
  QSTASH_CURRENT_SIGNING_KEY: "test-qstash-current",
  QSTASH_NEXT_SIGNING_KEY: "test-qstash-next",
  // Card payments against the loopback Stripe stand-in (test/setup/stripe-standin.ts), which checks this key
  // and signs its webhooks with this secret.
  STRIPE_SECRET_KEY: "sk_test_breakwater_standin",
  STRIPE_WEBHOOK_SECRET: "whsec_breakwater_standin_0123456789",
};
// Wrangler checks required secrets against process.env; satisfy it with the same test values.
Object.assign(process.env, testVars);

/**
 * Two projects:
 * - `workers`: unit and integration tests inside workerd with the bindings of wrangler.toml (local D1,
 *   KV, queues, Durable Objects); storage is isolated per test file; migrations by the setup file.
 * - `node`: Node-side tests — against the real local server (scripts/serve.ts; the operations page in
 *   Debian's Chromium through Playwright), and static checks of the source (metric catalog).
 */
export default defineConfig(async () => {
  const migrations = (dir: string) => {
    const full = path.join(import.meta.dirname, dir);
    return existsSync(full) ? readD1Migrations(full) : Promise.resolve([]);
  };
  const catalogMigrations = await migrations("migrations/d1/catalog");
  const shardMigrations = await migrations("migrations/d1/shard");
  return {
    test: {
      projects: [
        {
          plugins: [
            cloudflareTest(({ inject }) => ({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: {
                  ...testVars,
                  TEST_MIGRATIONS_CATALOG: catalogMigrations,
                  TEST_MIGRATIONS_SHARD: shardMigrations,
                  // Loopback Upstash REST proxy in front of the local Redis (test/setup/upstash-proxy.ts).
                  TEST_UPSTASH: inject("upstashProxy"),
                  TEST_QSTASH: inject("qstashMock"),
                  TEST_PG: inject("pgShards"),
                  STRIPE_API_URL: inject("stripeStandin").url,
                  // Webhooks published by the queue consumers go to the loopback QStash stand-in.
                  QSTASH_URL: inject("qstashMock").url,
                  TEST_STRIPE: inject("stripeStandin"),
                },
              },
            })),
          ],
          test: {
            name: "workers",
            include: ["test/**/*.test.ts"],
            exclude: ["test/e2e/**", "test/node/**"],
            setupFiles: ["./test/setup/apply-migrations.ts"],
            globalSetup: [
              "./test/setup/upstash-proxy.ts",
              "./test/setup/qstash-mock.ts",
              "./test/setup/postgres.ts",
              "./test/setup/stripe-standin.ts",
            ],
            testTimeout: 30_000,
            hookTimeout: 30_000,
          },
        },
        {
          test: {
            name: "node",
            include: ["test/e2e/**/*.test.ts", "test/node/**/*.test.ts"],
            environment: "node",
            globalSetup: ["./test/setup/build-worker.ts"],
            // Browser tests poll pages on a shared, loaded machine: give polls time by default.
            expect: { poll: { timeout: 15_000, interval: 100 } },
            testTimeout: 120_000,
            hookTimeout: 120_000,
          },
        },
      ],
    },
  };
});

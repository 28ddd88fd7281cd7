import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/**
 * Tests run inside workerd with the bindings of wrangler.toml (local D1, KV, queues, Durable Objects).
 * Storage is isolated per test file. Migrations are applied by test/setup/apply-migrations.ts.
 */
/** Local-only secrets and vars for tests (never used in production). */
const testVars = {
  DEV_AUTH: "true",
  REQUEST_LOG: "off",
  JWT_SECRET: "test-jwt-secret-0123456789abcdef",
  SIGNING_SECRET: "test-signing-secret-0123456789abcdef",
  QSTASH_TOKEN: "test-qstash-token",
  QSTASH_CURRENT_SIGNING_KEY: "test-qstash-current",
  QSTASH_NEXT_SIGNING_KEY: "test-qstash-next",
};
// Wrangler checks required secrets against process.env; satisfy it with the same test values.
Object.assign(process.env, testVars);

export default defineConfig(async () => {
  const catalogMigrations = await readD1Migrations(path.join(import.meta.dirname, "migrations/d1/catalog"));
  const shardMigrations = await readD1Migrations(path.join(import.meta.dirname, "migrations/d1/shard"));
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            ...testVars,
            TEST_MIGRATIONS_CATALOG: catalogMigrations,
            TEST_MIGRATIONS_SHARD: shardMigrations,
          },
        },
      }),
    ],
    test: {
      include: ["test/**/*.test.ts"],
      setupFiles: ["./test/setup/apply-migrations.ts"],
      testTimeout: 30_000,
      hookTimeout: 30_000,
    },
  };
});

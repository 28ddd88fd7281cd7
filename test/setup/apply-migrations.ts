import { applyD1Migrations, type D1Migration } from "cloudflare:test";
import { env } from "cloudflare:workers";

/** Test-only bindings injected by vitest.config.mts. */
declare global {
  namespace Cloudflare {
    interface Env {
      TEST_MIGRATIONS_CATALOG: D1Migration[];
      TEST_MIGRATIONS_SHARD: D1Migration[];
    }
  }
}

// Applied once per test file (storage is isolated per file); applyD1Migrations skips what is applied.
await applyD1Migrations(env.CATALOG_DB, env.TEST_MIGRATIONS_CATALOG);
await applyD1Migrations(env.SHARD_0, env.TEST_MIGRATIONS_SHARD);
await applyD1Migrations(env.SHARD_1, env.TEST_MIGRATIONS_SHARD);
await applyD1Migrations(env.SHARD_2, env.TEST_MIGRATIONS_SHARD);
await applyD1Migrations(env.SHARD_3, env.TEST_MIGRATIONS_SHARD);

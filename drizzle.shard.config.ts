import { defineConfig } from "drizzle-kit";

/** `npm run db:generate:shard`: SQL migrations of the order shards on D1 (lib/db/shard-schema.ts). */
export default defineConfig({ dialect: "sqlite", schema: "./lib/db/shard-schema.ts", out: "./migrations/d1/shard" });

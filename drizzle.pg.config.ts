import { defineConfig } from "drizzle-kit";

/** `npm run db:generate:pg`: SQL migrations of the order shards on PostgreSQL (lib/db/shard-schema-pg.ts). */
export default defineConfig({ dialect: "postgresql", schema: "./lib/db/shard-schema-pg.ts", out: "./migrations/pg" });

import { defineConfig } from "drizzle-kit";

/** `npm run db:generate` writes SQL migrations for the catalog D1 from lib/db/catalog-schema.ts. */
export default defineConfig({
  dialect: "sqlite",
  schema: "./lib/db/catalog-schema.ts",
  out: "./migrations/d1/catalog",
});

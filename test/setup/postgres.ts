import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type postgresType from "postgres";
import type { TestProject } from "vitest/node";

// This file runs in Node, but the workers project resolves packages with the `workerd` condition, which
// would pick postgres' Cloudflare build (cloudflare:sockets). Load its Node build explicitly.
const postgres = createRequire(import.meta.url)("postgres") as typeof postgresType;

/**
 * The Postgres shard backend is tested against the real PostgreSQL on this machine: two databases as
 * two shards (PG_URL, default postgres://postgres@127.0.0.1:5432). This globalSetup creates them when
 * missing, resets their tables, applies migrations/pg, and hands the connection strings to the workers
 * project. It fails loudly when PostgreSQL is not reachable (.ci/run starts it).
 */

/** What the tests get. */
export type PgShardsInfo = { urls: string[] };

declare module "vitest" {
  export interface ProvidedContext {
    pgShards: PgShardsInfo;
  }
}

const DATABASES = ["breakwater_shard_0", "breakwater_shard_1"];

export default async function setup(project: TestProject): Promise<void> {
  const base = process.env.PG_URL ?? "postgres://postgres@127.0.0.1:5432";
  const admin = postgres(`${base}/postgres`, { max: 1, onnotice: () => {} });
  try {
    for (const db of DATABASES) {
      const [exists] = await admin`SELECT 1 AS ok FROM pg_database WHERE datname = ${db}`;
      if (!exists) await admin.unsafe(`CREATE DATABASE ${db}`);
    }
  } catch (err) {
    throw new Error(`PostgreSQL is not reachable at ${base} (the Postgres shard tests need it): ${String(err)}`);
  } finally {
    await admin.end();
  }
  const dir = path.resolve(import.meta.dirname, "../../migrations/pg");
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort();
  for (const db of DATABASES) {
    const sql = postgres(`${base}/${db}`, { max: 1, onnotice: () => {} });
    await sql.unsafe("DROP TABLE IF EXISTS orders, tickets, mail_outbox CASCADE");
    for (const f of files)
      for (const stmt of readFileSync(path.join(dir, f), "utf8").split("--> statement-breakpoint")) if (stmt.trim()) await sql.unsafe(stmt);
    await sql.end();
  }
  project.provide("pgShards", { urls: DATABASES.map((db) => `${base}/${db}`) });
}

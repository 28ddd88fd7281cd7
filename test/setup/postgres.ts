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
 * missing, applies migrations/pg into a schema of this run's own (`bw_test_<pid>_<time>`, dropped at the
 * end), and hands the connection strings to the workers project with that schema as their `search_path`
 * — so test runs started side by side on one machine never see each other's rows. It fails loudly when
 * PostgreSQL is not reachable (.ci/run starts it).
 */

/** What the tests get: one connection string per shard database. */
export type PgShardsInfo = { urls: string[]; schema: string };

declare module "vitest" {
  export interface ProvidedContext {
    pgShards: PgShardsInfo;
  }
}

const DATABASES = ["breakwater_shard_0", "breakwater_shard_1"];
const PREFIX = "bw_test_";

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const base = process.env.PG_URL ?? "postgres://postgres@127.0.0.1:5432";
  const schema = `${PREFIX}${process.pid}_${Date.now().toString(36)}`;
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
  const statements = readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort()
    .flatMap((f) => readFileSync(path.join(dir, f), "utf8").split("--> statement-breakpoint"))
    .filter((stmt) => stmt.trim());
  for (const db of DATABASES) {
    const sql = postgres(`${base}/${db}`, { max: 1, onnotice: () => {} });
    try {
      // Schemas left by runs that were killed before their teardown.
      for (const { nspname } of await sql<{ nspname: string }[]>`SELECT nspname FROM pg_namespace WHERE nspname LIKE ${`${PREFIX}%`}`) {
        const pid = Number(nspname.slice(PREFIX.length).split("_")[0]);
        if (!alive(pid)) await sql.unsafe(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
      }
      await sql.unsafe(`CREATE SCHEMA "${schema}"`);
      await sql.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL search_path TO "${schema}"`);
        for (const stmt of statements) await tx.unsafe(stmt);
      });
    } finally {
      await sql.end();
    }
  }
  project.provide("pgShards", { urls: DATABASES.map((db) => `${base}/${db}?search_path=${schema}`), schema });
  return async () => {
    for (const db of DATABASES) {
      const sql = postgres(`${base}/${db}`, { max: 1, onnotice: () => {} });
      await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => sql.end());
    }
  };
}

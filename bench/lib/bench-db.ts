import postgres from "postgres";

/** Creates the benchmarks' PostgreSQL database (`breakwater_bench`) when the server does not have it yet (a fresh machine). */
export async function ensureBenchDatabase(): Promise<void> {
  const admin = postgres({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres", max: 1, onnotice: () => {} });
  try {
    const [found] = await admin`SELECT 1 AS ok FROM pg_database WHERE datname = 'breakwater_bench'`;
    if (!found) await admin`CREATE DATABASE breakwater_bench`;
  } finally {
    await admin.end();
  }
}

import { metric } from "./metric-catalog";

/**
 * Wraps a D1 binding so that every statement executed through it is counted in
 * `breakwater_d1_queries_total{db}`. Benchmarks read that counter to prove that reads do not reach D1;
 * it counts executions (run/all/first/raw, and each statement of a batch), not guesses.
 */
export function countingD1(db: D1Database, name: string): D1Database {
  const count = (n = 1) => metric.d1Queries.inc({ db: name }, n);
  const wrapStatement = (stmt: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(stmt, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== "function") return value;
        if (prop === "bind") return (...args: unknown[]) => wrapStatement(value.apply(target, args) as D1PreparedStatement);
        if (prop === "run" || prop === "all" || prop === "first" || prop === "raw")
          return (...args: unknown[]) => {
            count();
            return value.apply(target, args);
          };
        return value.bind(target);
      },
    });
  return new Proxy(db, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      if (prop === "prepare") return (sql: string) => wrapStatement(target.prepare(sql));
      if (prop === "batch")
        return (stmts: D1PreparedStatement[]) => {
          count(stmts.length);
          return target.batch(stmts);
        };
      if (prop === "exec")
        return (sql: string) => {
          count();
          return target.exec(sql);
        };
      return value.bind(target);
    },
  });
}

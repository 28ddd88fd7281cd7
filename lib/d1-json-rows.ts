import { getTableColumns, getTableName } from "drizzle-orm";
import type { SQLiteTable } from "drizzle-orm/sqlite-core";

/**
 * `INSERT INTO table (…) SELECT … FROM json_each(?) WHERE true ON CONFLICT DO NOTHING`: any number of rows
 * in one statement that binds one parameter, the rows as a JSON array. D1 binds at most 100 parameters a
 * statement, so one parameter a column took a statement per few rows, each built and bound apart.
 * `keys` are the rows' keys, each the name of a column of `table` in the drizzle schema (its SQL name
 * comes from there); keys in `json` hold JSON values, stored as JSON text.
 * drizzle's `batch()` cannot run a raw statement with parameters: run it on the D1 binding itself.
 */
export function insertJsonRows<T extends SQLiteTable>(
  table: T,
  keys: readonly (keyof T["_"]["columns"] & string)[],
  json: ReadonlySet<string> = new Set(),
): string {
  const columns = getTableColumns(table);
  const names = keys.map((k) => `"${columns[k]?.name}"`).join(", ");
  const values = keys.map((k) => `value ${json.has(k) ? "->" : "->>"} '$.${k}'`).join(", ");
  return `INSERT INTO "${getTableName(table)}" (${names}) SELECT ${values} FROM json_each(?) WHERE true ON CONFLICT DO NOTHING`;
}

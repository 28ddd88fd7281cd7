import { DurableObject } from "cloudflare:workers";
import { GroupCommit } from "../lib/group-commit";
import type { SandboxCharge } from "../lib/payments";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS charges (idempotency_key TEXT PRIMARY KEY, charge TEXT NOT NULL, charged_at TEXT NOT NULL);
`;

/**
 * SandboxLedger: the sandbox payment provider's durable memory of its charges (lib/payments.ts), as a real
 * provider keeps its own: a restart or a crash of the Worker must still find (and void) what was charged,
 * and the drop's checker reads every charge to prove that nobody paid without tickets. The charges are
 * spread over a few objects by key (`sandboxLedgerName`).
 *
 * Consistent where KV is not: the first charge stored under an idempotency key is the one every later
 * charge with that key answers, whichever isolate makes it. The writes of the calls that arrive together
 * share one storage commit ({@link GroupCommit}).
 */
export class SandboxLedger extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly group = new GroupCommit();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
  }

  /** The charge stored under `key`, or null. */
  get(key: string): SandboxCharge | null {
    const row = this.sql.exec<{ charge: string }>("SELECT charge FROM charges WHERE idempotency_key = ?", key).toArray()[0];
    return row ? (JSON.parse(row.charge) as SandboxCharge) : null;
  }

  /** Stores `charge` unless a charge is stored under its key already; answers the one stored. */
  record(charge: SandboxCharge): Promise<SandboxCharge> {
    // Read back only when another charge holds the key (what was just written is `charge` itself).
    return this.group.run(() => (this.write(charge, "DO NOTHING") ? charge : (this.get(charge.idempotencyKey) ?? charge)));
  }

  /** Stores `charge` as it is now (a void or a refund changed it). */
  put(charge: SandboxCharge): Promise<void> {
    return this.group.run(() => {
      this.write(charge, "DO UPDATE SET charge = excluded.charge");
    });
  }

  /** Writes `charge`; false when a conflict wrote nothing. */
  private write(charge: SandboxCharge, onConflict: "DO NOTHING" | "DO UPDATE SET charge = excluded.charge"): boolean {
    const cursor = this.sql.exec(
      `INSERT INTO charges (idempotency_key, charge, charged_at) VALUES (?, ?, ?) ON CONFLICT (idempotency_key) ${onConflict}`,
      charge.idempotencyKey,
      JSON.stringify(charge),
      charge.chargedAt ?? new Date().toISOString(),
    );
    cursor.toArray();
    return cursor.rowsWritten > 0;
  }

  /** Every charge of this object, oldest first. */
  list(): SandboxCharge[] {
    return this.sql
      .exec<{ charge: string }>("SELECT charge FROM charges ORDER BY charged_at, idempotency_key")
      .toArray()
      .map((r) => JSON.parse(r.charge) as SandboxCharge);
  }
}

import { DurableObject } from "cloudflare:workers";
import { GroupCommit } from "../lib/group-commit";
import type { SandboxCharge } from "../lib/payments";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS charges (idempotency_key TEXT PRIMARY KEY, charge TEXT NOT NULL, charged_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
`;

/**
 * The objects `sandbox:0` … `sandbox:7` that kept the charges before one object did (a charge was in
 * object `hash32(key) % 8`). The ledger adopts their charges once ({@link SandboxLedger.adopt}); nothing
 * writes to them any more.
 */
const LEGACY_OBJECTS = Array.from({ length: 8 }, (_, i) => `sandbox:${i}`);

/**
 * SandboxLedger: the sandbox payment provider's durable memory of its charges (lib/payments.ts), as a real
 * provider keeps its own: a restart or a crash of the Worker must still find (and void) what was charged,
 * and the drop's checker reads every charge to prove that nobody paid without tickets.
 *
 * One object (`SANDBOX_LEDGER_NAME`) keeps every charge, so the charges that arrive together share one
 * storage commit ({@link GroupCommit}); spread over several objects, concurrent checkouts each paid a
 * commit of their own. A sandbox takes test payments, far below what one object writes with group
 * commit. Consistent where KV is not: the first charge stored under an idempotency key is the one every
 * later charge with that key answers, whichever isolate makes it.
 */
export class SandboxLedger extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly group = new GroupCommit();
  /** Whether the legacy objects' charges are here ({@link adopt}); until then every call waits for it. */
  private adopted = false;
  private adopting: Promise<void> | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
    this.adopted = this.sql.exec("SELECT 1 FROM meta WHERE k = 'legacy_adopted'").toArray().length > 0;
  }

  /** The charge stored under `key`, or null. */
  async get(key: string): Promise<SandboxCharge | null> {
    if (!this.adopted) await this.adopt();
    return this.read(key);
  }

  /** Stores `charge` unless a charge is stored under its key already; answers the one stored. */
  async record(charge: SandboxCharge): Promise<SandboxCharge> {
    if (!this.adopted) await this.adopt();
    // Read back only when another charge holds the key (what was just written is `charge` itself).
    return this.group.run(() => (this.write(charge, "DO NOTHING") ? charge : (this.read(charge.idempotencyKey) ?? charge)));
  }

  /** Stores `charge` as it is now (a void or a refund changed it). */
  async put(charge: SandboxCharge): Promise<void> {
    if (!this.adopted) await this.adopt();
    return this.group.run(() => {
      this.write(charge, "DO UPDATE SET charge = excluded.charge");
    });
  }

  /** Every charge, oldest first. */
  async list(): Promise<SandboxCharge[]> {
    if (!this.adopted) await this.adopt();
    return this.stored();
  }

  /** This object's own charges, as they are; the adopting ledger reads a legacy object with it. */
  stored(): SandboxCharge[] {
    return this.sql
      .exec<{ charge: string }>("SELECT charge FROM charges ORDER BY charged_at, idempotency_key")
      .toArray()
      .map((r) => JSON.parse(r.charge) as SandboxCharge);
  }

  /**
   * Copies in, once, the charges of the objects that kept them before ({@link LEGACY_OBJECTS}), before any
   * other call is served, so a charge made then is still found, voided and listed, and still wins its key.
   * A failure fails the call that waited for it; the next call tries again.
   */
  private adopt(): Promise<void> {
    this.adopting ??= this.ctx
      .blockConcurrencyWhile(async () => {
        const parts = await Promise.all(
          LEGACY_OBJECTS.filter((name) => name !== this.ctx.id.name).map((name) =>
            this.env.SANDBOX_LEDGER.get(this.env.SANDBOX_LEDGER.idFromName(name)).stored(),
          ),
        );
        this.ctx.storage.transactionSync(() => {
          for (const charge of parts.flat()) this.write(charge, "DO NOTHING");
          this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('legacy_adopted', ?)", new Date().toISOString());
        });
        this.adopted = true;
      })
      .finally(() => {
        this.adopting = undefined;
      });
    return this.adopting;
  }

  private read(key: string): SandboxCharge | null {
    const row = this.sql.exec<{ charge: string }>("SELECT charge FROM charges WHERE idempotency_key = ?", key).toArray()[0];
    return row ? (JSON.parse(row.charge) as SandboxCharge) : null;
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
}

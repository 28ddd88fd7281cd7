import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { durableSandbox, objectSandboxLedger, resetSandbox, SANDBOX_LEDGER_NAME, type SandboxCharge } from "../../lib/payments";
import { hash32 } from "../../lib/signing";

// Storage is isolated per test file: the ledger below starts as a deployment of the code that spread the
// charges over eight objects finds it, with charges in those objects and none of its own.
const legacyCharge = (key: string): SandboxCharge => ({
  idempotencyKey: key,
  chargeId: `ch_legacy_${key.slice(7, 15)}`,
  amount: 700,
  currency: "EUR",
  status: "succeeded",
  chargedAt: "2026-12-04T09:00:00.000Z",
});
const rowsOf = (name: string, key: string) =>
  runInDurableObject(env.SANDBOX_LEDGER.get(env.SANDBOX_LEDGER.idFromName(name)), (_o, state) =>
    state.storage.sql.exec<{ charge: string }>("SELECT charge FROM charges WHERE idempotency_key = ?", key).toArray(),
  );

describe("SandboxLedger: one object, adopting the charges of the eight it replaced", () => {
  it("finds, lists, voids and keeps winning with the charges the legacy objects stored, and writes only to itself", async () => {
    const keys = Array.from({ length: 6 }, () => `legacy-${crypto.randomUUID()}:1`);
    // As the earlier code stored them: each in object hash32(key) % 8.
    for (const key of keys)
      await runInDurableObject(env.SANDBOX_LEDGER.get(env.SANDBOX_LEDGER.idFromName(`sandbox:${hash32(key) % 8}`)), (_o, state) => {
        state.storage.sql.exec(
          "INSERT INTO charges (idempotency_key, charge, charged_at) VALUES (?, ?, ?)",
          key,
          JSON.stringify(legacyCharge(key)),
          "2026-12-04T09:00:00.000Z",
        );
      });
    const ledger = objectSandboxLedger(env.SANDBOX_LEDGER);
    const [first, second, third] = keys as [string, string, string];

    // Charging a legacy key again answers the legacy charge (the first charge under a key stands).
    resetSandbox();
    expect(
      await durableSandbox(env.SANDBOX_LEDGER).charge({ idempotencyKey: first, amount: 700, currency: "EUR", token: "tok_ok" }),
    ).toEqual({
      status: "succeeded",
      chargeId: legacyCharge(first).chargeId,
    });
    expect(await ledger.get(second)).toEqual(legacyCharge(second));
    const listed = (await ledger.list()).filter((c) => keys.includes(c.idempotencyKey));
    expect(listed.map((c) => c.idempotencyKey).sort()).toEqual([...keys].sort());

    // A restarted isolate voids a legacy charge; the void is kept by the ledger, not the legacy object.
    resetSandbox();
    expect(await durableSandbox(env.SANDBOX_LEDGER).voidCharge(third)).toEqual({ refunded: true, chargeId: legacyCharge(third).chargeId });
    expect(await ledger.get(third)).toMatchObject({ status: "refunded" });
    const legacyRows = await rowsOf(`sandbox:${hash32(third) % 8}`, third);
    expect(legacyRows.map((r) => (JSON.parse(r.charge) as SandboxCharge).status)).toEqual(["succeeded"]);

    // A new charge lives in the one ledger object only.
    const fresh = `fresh-${crypto.randomUUID()}:1`;
    const paid = await durableSandbox(env.SANDBOX_LEDGER).charge({ idempotencyKey: fresh, amount: 900, currency: "EUR", token: "tok_ok" });
    expect(await rowsOf(SANDBOX_LEDGER_NAME, fresh)).toHaveLength(1);
    expect(await rowsOf(`sandbox:${hash32(fresh) % 8}`, fresh)).toHaveLength(0);
    expect(paid.status === "succeeded" && (await ledger.get(fresh))?.chargeId === paid.chargeId).toBe(true);

    // The adoption ran once: a charge added to a legacy object afterwards is not copied in.
    const late = `late-${crypto.randomUUID()}:1`;
    await runInDurableObject(env.SANDBOX_LEDGER.get(env.SANDBOX_LEDGER.idFromName("sandbox:0")), (_o, state) => {
      state.storage.sql.exec(
        "INSERT INTO charges (idempotency_key, charge, charged_at) VALUES (?, ?, ?)",
        late,
        JSON.stringify(legacyCharge(late)),
        "x",
      );
    });
    expect(await ledger.get(late)).toBeNull();
  });
});

import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Inventory } from "../../durable-objects/inventory";
import { forgetEmptyShards, inventoryStub } from "../../lib/holds";
import { call, createEvent, type EventBody, tokenFor } from "../helpers";
import { expectInventoryInvariants } from "../inventory-helpers";

/**
 * Issue 21 #7: a GA hold of several places when the places left are scattered over the shards (each has
 * fewer than asked): the edge moves places to one shard and holds there. Every place stays sellable; the
 * section's capacity is conserved (each move exactly once); every hold keeps its places in one DO.
 */

let organizer: string;
const gaEvent = async (capacity: number, shards: number): Promise<EventBody> => {
  organizer ??= await tokenFor("org-gather", "organizer");
  return createEvent(organizer, {
    perCustomerLimit: 4,
    sections: [{ id: "floor", name: "Floor", kind: "ga", price: 1000, capacity, shards }],
  });
};

async function hold(ev: EventBody, buyer: string, quantity: number): Promise<Response> {
  return call(`/v1/events/${ev.id}/holds`, { method: "POST", token: await tokenFor(buyer), json: { sectionId: "floor", quantity } });
}

/** The capacity each shard's Inventory DO keeps now (null: never initialized). */
const shardCapacities = (ev: EventBody, shards: number) =>
  Promise.all(
    Array.from({ length: shards }, (_, shard) =>
      runInDurableObject(inventoryStub(env.INVENTORY, { eventId: ev.id, sectionId: "floor", shard }), (_i: Inventory, state) => {
        const row = state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'counters'").toArray().length
          ? state.storage.sql.exec<{ capacity: number }>("SELECT capacity FROM counters").toArray()[0]
          : undefined;
        return row?.capacity ?? null;
      }),
    ),
  );

describe("GA holds across scattered shards (issue 21 #7)", () => {
  it("capacity 8 over 8 shards: four buyers of 2 each get their places, then it is sold out", async () => {
    forgetEmptyShards();
    const ev = await gaEvent(8, 8);
    for (const buyer of ["g1", "g2", "g3", "g4"]) {
      const res = await hold(ev, buyer, 2);
      expect(res.status, await res.clone().text()).toBe(201);
      expect(((await res.json()) as { hold: { quantity: number } }).hold.quantity).toBe(2);
    }
    const fifth = await hold(ev, "g5", 1);
    expect(fifth.status).toBe(409);
    expect(await fifth.json()).toMatchObject({ code: "sold_out" });
    const totals = await expectInventoryInvariants(ev);
    expect(totals.floor).toEqual({ held: 8, sold: 0, capacity: 8 });
    // Capacity moved between shards, never created: the shards' capacities still add up to 8.
    const caps = await shardCapacities(ev, 8);
    expect(caps.reduce<number>((n, c) => n + (c ?? 1), 0)).toBe(8);
    expect(caps.some((c) => c !== null && c > 1)).toBe(true);
  });

  it("after 4 of 5 places went in every shard, concurrent buyers of 2 race for the scattered rest; then every place left is sold exactly once", async () => {
    forgetEmptyShards();
    const capacity = 40;
    const ev = await gaEvent(capacity, 8);
    // Eight buyers of 4, one after the other: each lands on a shard with 4 free (5 each), leaving 1 in every shard.
    for (let i = 0; i < 8; i++) expect((await hold(ev, `four-${i}`, 4)).status).toBe(201);
    const scattered = (await shardCapacities(ev, 8)).map((c) => c);
    expect(scattered).toEqual(Array(8).fill(5));
    // Six buyers of 2 at once for the 8 scattered places: their gathers race over the same shards.
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => hold(ev, `pair-${i}`, 2)));
    let held = 32;
    for (const [i, res] of answers.entries()) {
      const body = (await res.json()) as { hold?: { quantity: number }; code?: string };
      if (res.status === 201) held += body.hold?.quantity ?? 0;
      else expect([409, 503], `buyer ${i}: ${JSON.stringify(body)}`).toContain(res.status);
    }
    expect(held).toBeGreaterThan(32);
    expect(held).toBeLessThanOrEqual(capacity);
    await expectInventoryInvariants(ev);
    // What is left is reachable: buyers asking for up to 4 of what remains each get it, until none remain.
    let left = capacity - held;
    for (let i = 0; left > 0; i++) {
      const q = Math.min(4, left);
      const res = await hold(ev, `sweep-${i}`, q);
      expect(res.status, `sweep ${i} asking ${q} of ${left}: ${await res.clone().text()}`).toBe(201);
      left -= q;
    }
    expect((await hold(ev, "after", 1)).status).toBe(409);
    const totals = await expectInventoryInvariants(ev);
    expect(totals.floor).toEqual({ held: capacity, sold: 0, capacity });
  });

  it("a move the edge never delivered is delivered once by the lender's alarm; a second delivery adds nothing", async () => {
    forgetEmptyShards();
    const ev = await gaEvent(4, 2);
    // Both shards initialized by a hold of 1 each (shard order follows the buyer).
    let initialized = [false, false];
    for (let i = 0; !initialized.every(Boolean) && i < 50; i++) {
      await hold(ev, `init-${i}`, 1);
      initialized = (await shardCapacities(ev, 2)).map((c) => c !== null);
    }
    expect(initialized).toEqual([true, true]);
    const [a, b] = [0, 1].map((shard) => inventoryStub(env.INVENTORY, { eventId: ev.id, sectionId: "floor", shard }));
    if (!a || !b) throw new Error("no stubs");
    const before = await shardCapacities(ev, 2);
    const lent = await a.lendCapacity("xfr_test_undelivered_0001", 1, 5);
    expect(lent).toEqual({ ok: true, value: { lent: (before[0] ?? 0) - 1 } });
    // Asked again (an edge retry), the same move: nothing more lent.
    expect(await a.lendCapacity("xfr_test_undelivered_0001", 1, 5)).toEqual(lent);
    // On its way: the section's invariant counts it, no shard has it.
    await expectInventoryInvariants(ev);
    // The edge "crashed": the lender's alarm delivers it once the move is old enough.
    await runInDurableObject(a, (_i: Inventory, state) => {
      state.storage.sql.exec("UPDATE capacity_out SET created_at = created_at - 60000");
    });
    await runDurableObjectAlarm(a);
    const after = await shardCapacities(ev, 2);
    expect(after).toEqual([1, (before[1] ?? 0) + ((before[0] ?? 0) - 1)]);
    // Delivered twice (the alarm and a late edge): counted once.
    expect(await b.receiveCapacity("xfr_test_undelivered_0001", 0, (before[0] ?? 0) - 1)).toEqual({ added: false });
    expect(await shardCapacities(ev, 2)).toEqual(after);
    await expectInventoryInvariants(ev);
    // Lending is refused for what is held or sold, and between sections' shards that do not exist.
    expect(await a.lendCapacity("xfr_test_too_much_00001", 1, 1)).toMatchObject({ ok: false, code: "sold_out" });
    expect(await a.lendCapacity("xfr_test_bad_shard_0001", 7, 1)).toMatchObject({ ok: false, code: "validation_failed" });
  });
});

import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Inventory } from "../../durable-objects/inventory";
import type { EventRouting } from "../../lib/event-schema";
import type { InventoryConfig } from "../../lib/inventory-types";
import type { OrderMessage } from "../../lib/order";

/**
 * Random sequences of hold / release / expire / checkout (confirm or abort) against one Inventory DO,
 * checked after every step against a plain model of the section.
 */

type Op =
  | { t: "holdSeats"; user: number; seats: number[] }
  | { t: "holdQty"; user: number; qty: number }
  | { t: "release"; pick: number; asOwner: boolean }
  | { t: "expire"; pick: number }
  | { t: "checkout"; pick: number; pay: boolean };

const ROWS = [
  { id: "A", seats: 4 },
  { id: "B", seats: 4 },
];
const SEAT_IDS = ROWS.flatMap((r) => Array.from({ length: r.seats }, (_, i) => `${r.id}-${i + 1}`));

/** A recorded order for the model: the DO stores and returns it, it never reads its fields. */
const paidMessage = (id: string, holdId: string, userId: string): OrderMessage => {
  const tickets = [{ id: `${id}-t0`, seat: "GA-1", code: "c" }];
  const doc = { eventId: "evt", sectionId: "sec", holdId, seats: [], quantity: 1, total: 0, currency: "EUR", tickets };
  return {
    ...doc,
    v: 1,
    kind: "order.paid",
    orderId: id,
    userId,
    paidAt: new Date().toISOString(),
    payment: { provider: "sandbox", chargeId: "ch" },
  };
};

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    t: fc.constant("holdSeats" as const),
    user: fc.nat(3),
    seats: fc.uniqueArray(fc.nat(SEAT_IDS.length - 1), { minLength: 1, maxLength: 3 }),
  }),
  fc.record({ t: fc.constant("holdQty" as const), user: fc.nat(3), qty: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ t: fc.constant("release" as const), pick: fc.nat(), asOwner: fc.boolean() }),
  fc.record({ t: fc.constant("expire" as const), pick: fc.nat() }),
  fc.record({ t: fc.constant("checkout" as const), pick: fc.nat(), pay: fc.boolean() }),
);

interface ModelHold {
  id: string;
  user: string;
  places: string[]; // seat ids, or n synthetic places for GA
  status: "active" | "expired" | "released" | "sold";
}

let run = 0;

async function checkSequence(kind: "seated" | "ga", ops: Op[]): Promise<void> {
  const name = `prop-${kind}-${run++}-${Math.random()}`;
  const stub = env.INVENTORY.get(env.INVENTORY.idFromName(name));
  const capacity = kind === "seated" ? SEAT_IDS.length : 6;
  const cfg: InventoryConfig = {
    eventId: `evt_prop${run}`,
    sectionId: "s",
    kind,
    shard: 0,
    shards: 1,
    capacity,
    price: 10,
    currency: "EUR",
    holdSeconds: 600,
    ...(kind === "seated" ? { rows: ROWS } : {}),
  };
  const event: EventRouting = {
    id: cfg.eventId,
    sections: [],
    waitingRoom: { enabled: false, admitPerMinute: 1 },
    saleStartsAt: new Date(0).toISOString(),
  };

  await runInDurableObject(stub, async (inst: Inventory, state) => {
    const sql = state.storage.sql;
    inst.init(cfg, event);
    const model: ModelHold[] = [];
    const taken = () => new Set(model.filter((h) => h.status === "active" || h.status === "sold").flatMap((h) => h.places));
    let n = 0;
    for (const op of ops) {
      const live = model.filter((h) => h.status === "active");
      switch (op.t) {
        case "holdSeats": {
          const seats = op.seats.map((i) => SEAT_IDS[i] as string);
          const id = `h${n++}`;
          const r = await inst.hold(cfg, event, { holdId: id, userId: `u${op.user}`, seats });
          if (kind === "ga") {
            expect(r.ok).toBe(false);
            break;
          }
          const free = seats.every((s) => !taken().has(s));
          expect(r.ok, `hold ${seats.join(",")}`).toBe(free);
          if (r.ok) model.push({ id, user: `u${op.user}`, places: seats, status: "active" });
          break;
        }
        case "holdQty": {
          const id = `h${n++}`;
          const available = capacity - taken().size;
          const r = await inst.hold(cfg, event, { holdId: id, userId: `u${op.user}`, quantity: op.qty });
          expect(r.ok, `hold qty ${op.qty} with ${available} left`).toBe(op.qty <= available);
          if (r.ok) {
            const places = kind === "seated" ? r.value.seats : Array.from({ length: op.qty }, (_, i) => `${id}#${i}`);
            expect(places).toHaveLength(op.qty);
            for (const p of places) expect(taken().has(p)).toBe(false);
            model.push({ id, user: `u${op.user}`, places, status: "active" });
          } else {
            expect(r.code).toBe(available === 0 ? "sold_out" : "seats_unavailable");
          }
          break;
        }
        case "release": {
          const h = model[op.pick % Math.max(1, model.length)];
          if (!h) break;
          const r = await inst.release(h.id, op.asOwner ? h.user : "intruder");
          if (!op.asOwner) {
            expect(r.ok).toBe(false);
            break;
          }
          expect(r.ok).toBe(h.status !== "sold");
          if (h.status === "active") h.status = "released";
          break;
        }
        case "expire": {
          const h = live[op.pick % Math.max(1, live.length)];
          if (!h) break;
          sql.exec("UPDATE holds SET expires_at = ? WHERE id = ?", Date.now() - 1, h.id);
          inst.snapshot(); // expires what is due, as the alarm would
          h.status = "expired";
          break;
        }
        case "checkout": {
          const h = model[op.pick % Math.max(1, model.length)];
          if (!h) break;
          const begun = await inst.beginCheckout(h.id, h.user, "sandbox");
          if (h.status !== "active") {
            if (h.status === "sold") expect(begun.ok && begun.value.hold.status === "sold").toBe(true);
            else expect(begun.ok ? "ok" : begun.code).toBe("hold_expired");
            break;
          }
          expect(begun.ok).toBe(true);
          // A hold in checkout never expires, even past its time.
          sql.exec("UPDATE holds SET expires_at = ? WHERE id = ?", Date.now() - 1, h.id);
          inst.snapshot();
          expect(sql.exec<{ status: string }>("SELECT status FROM holds WHERE id = ?", h.id).one().status).toBe("checking_out");
          if (op.pay) {
            const done = await inst.completeCheckout(h.id, paidMessage(`o-${h.id}`, h.id, h.user));
            expect(done.ok).toBe(true);
            expect((await inst.completeCheckout(h.id, paidMessage(`o-${h.id}`, h.id, h.user))).ok).toBe(true);
            h.status = "sold";
          } else {
            const back = await inst.abortCheckout(h.id);
            expect(back.ok && back.value.status).toBe("active");
          }
          break;
        }
      }
      // Invariant 1 after every step, against the model and the DO's own tables.
      const counts = inst.snapshot();
      const held = model.filter((h) => h.status === "active").reduce((k, h) => k + h.places.length, 0);
      const sold = model.filter((h) => h.status === "sold").reduce((k, h) => k + h.places.length, 0);
      expect(counts).toEqual({ capacity, held, sold, available: capacity - held - sold });
      if (kind === "seated") {
        const seatRows = sql.exec<{ id: string; status: string }>("SELECT id, status FROM seats").toArray();
        const byStatus = (s: string) => seatRows.filter((r) => r.status === s).length;
        expect([byStatus("held"), byStatus("sold"), byStatus("available")]).toEqual([held, sold, capacity - held - sold]);
        const soldSeats = new Set(model.filter((h) => h.status === "sold").flatMap((h) => h.places));
        for (const r of seatRows) if (soldSeats.has(r.id)) expect(r.status).toBe("sold");
      }
    }
  });
}

describe("Inventory DO against a model (fast-check)", () => {
  it("seated: random hold/release/expire/checkout sequences keep the model's state", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => checkSequence("seated", ops)),
      { numRuns: 60 },
    );
  });

  it("GA: random hold/release/expire/checkout sequences keep the model's state", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => checkSequence("ga", ops)),
      { numRuns: 60 },
    );
  });
});

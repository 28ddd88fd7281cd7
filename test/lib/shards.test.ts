import { describe, expect, it } from "vitest";
import { shardOrder } from "../../lib/holds";
import { shardFor } from "../../lib/shards";
import { hash32 } from "../../lib/signing";

describe("shardFor (rendezvous hashing)", () => {
  const users = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

  it("is stable, ignores the order of the list, and spreads buyers evenly", () => {
    const shards = ["SHARD_0", "SHARD_1", "SHARD_2", "SHARD_3"];
    const reversed = [...shards].reverse();
    const counts = new Map<string, number>();
    for (const u of users) {
      const s = shardFor(u, shards);
      expect(shardFor(u, shards)).toBe(s);
      expect(shardFor(u, reversed)).toBe(s);
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    for (const s of shards) {
      expect(counts.get(s) ?? 0).toBeGreaterThan(2_300);
      expect(counts.get(s) ?? 0).toBeLessThan(2_700);
    }
  });

  it("spreads ids that differ only in their last characters independently (no cohorts on one shard)", () => {
    const shards = ["SHARD_0", "SHARD_1"];
    let same = 0;
    let prev = "";
    for (const u of users) {
      const s = shardFor(u, shards);
      if (s === prev) same++;
      prev = s;
    }
    // Independent fair coins: consecutive ids agree half of the time.
    expect(same / users.length).toBeGreaterThan(0.47);
    expect(same / users.length).toBeLessThan(0.53);
    // Cohorts of 10 ids with one prefix: all ten on one shard has probability 2/1024.
    let cohorts = 0;
    for (let t = 0; t < 500; t++) {
      const owners = new Set(Array.from({ length: 10 }, (_, i) => shardFor(`cohort${t}-buyer-${i}`, shards)));
      if (owners.size === 1) cohorts++;
    }
    expect(cohorts).toBeLessThan(10);
  });

  it("moves only the buyers the new shard wins when one is appended", () => {
    const before = ["SHARD_0", "SHARD_1", "SHARD_2"];
    const after = [...before, "SHARD_3"];
    let moved = 0;
    for (const u of users) {
      const a = shardFor(u, before);
      const b = shardFor(u, after);
      if (a !== b) {
        moved++;
        expect(b).toBe("SHARD_3");
      }
    }
    expect(moved / users.length).toBeGreaterThan(0.22);
    expect(moved / users.length).toBeLessThan(0.28);
  });

  it("with one shard, every buyer is on it; an empty list is refused", () => {
    expect(shardFor("anyone", ["SHARD_0"])).toBe("SHARD_0");
    expect(() => shardFor("u", [])).toThrow("no order shards configured");
  });
});

describe("hash32 buckets", () => {
  it("spread sequential ids evenly over buckets (GA shards, limiter buckets)", () => {
    for (const n of [2, 4, 8]) {
      const counts = new Array(n).fill(0);
      for (let i = 0; i < 8_000; i++) counts[hash32(`buyer-${i}`) % n]++;
      for (const c of counts) expect(c).toBeGreaterThan((8_000 / n) * 0.8);
      const first = new Array(n).fill(0);
      for (let i = 0; i < 8_000; i++) first[shardOrder(`bench-buyer-${i}`, n)[0] as number]++;
      for (const c of first) expect(c).toBeGreaterThan((8_000 / n) * 0.8);
    }
  });
});

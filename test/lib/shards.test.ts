import { describe, expect, it } from "vitest";
import { shardFor } from "../../lib/shards";

describe("shardFor (rendezvous hashing)", () => {
  const users = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
  it("is stable and spreads buyers evenly", () => {
    const shards = ["SHARD_0", "SHARD_1", "SHARD_2", "SHARD_3"];
    const counts = new Map<string, number>();
    for (const u of users) {
      const s = shardFor(u, shards);
      expect(shardFor(u, shards)).toBe(s);
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    for (const s of shards) expect(counts.get(s) ?? 0).toBeGreaterThan(2_000);
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
    expect(moved / users.length).toBeGreaterThan(0.2);
    expect(moved / users.length).toBeLessThan(0.3);
  });

  it("refuses an empty shard list", () => {
    expect(() => shardFor("u", [])).toThrow();
  });
});

import { describe, expect, it } from "vitest";
import { GroupCommit } from "../../lib/group-commit";

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("GroupCommit", () => {
  it("runs the calls made before the next macrotask together, in arrival order, and answers each", async () => {
    const groups: number[] = [];
    const group = new GroupCommit((n) => groups.push(n));
    const ran: number[] = [];
    const answers = Promise.all(
      [1, 2, 3].map((i) =>
        group.run(() => {
          ran.push(i);
          return i * 10;
        }),
      ),
    );
    // Nothing runs in the caller's turn.
    expect(ran).toEqual([]);
    expect(await answers).toEqual([10, 20, 30]);
    expect(ran).toEqual([1, 2, 3]);
    expect(groups).toEqual([3]);
  });

  it("starts a new group for calls made after a group ran", async () => {
    const groups: number[] = [];
    const group = new GroupCommit((n) => groups.push(n));
    await group.run(() => "a");
    await tick();
    await Promise.all([group.run(() => "b"), group.run(() => "c")]);
    expect(groups).toEqual([1, 2]);
  });

  it("rejects only the call that threw; the others of its group still run and answer", async () => {
    const group = new GroupCommit();
    const ran: string[] = [];
    const results = await Promise.allSettled([
      group.run(() => ran.push("first")),
      group.run(() => {
        throw new Error("boom");
      }),
      group.run(() => ran.push("third")),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(ran).toEqual(["first", "third"]);
  });

  it("counts a group's size in the requests its calls carry", async () => {
    const groups: number[] = [];
    const group = new GroupCommit((n) => groups.push(n));
    await Promise.all([group.run(() => 1, 5), group.run(() => 2)]);
    expect(groups).toEqual([6]);
  });
});

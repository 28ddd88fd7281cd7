import { describe, expect, it } from "vitest";
import { Coalescer } from "../../lib/coalesce";

/** A window the test closes by hand. */
function gate() {
  let open = () => {};
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { delay: () => opened, open };
}

describe("Coalescer", () => {
  it("hands the items of one key over in one call, in arrival order, and every adder waits for it", async () => {
    const flushed: [string, number[]][] = [];
    const g = gate();
    const c = new Coalescer<number>(async (key, items) => void flushed.push([key, [...items]]), { delay: g.delay });
    const adds = [c.add("q", 1), c.add("q", 2), c.add("other", 9), c.add("q", 3)];
    await Promise.resolve();
    expect(flushed).toEqual([]);
    g.open();
    await Promise.all(adds);
    expect(flushed).toContainEqual(["q", [1, 2, 3]]);
    expect(flushed).toContainEqual(["other", [9]]);
    expect(flushed).toHaveLength(2);
  });

  it("caps a batch at max items: the next item opens another batch", async () => {
    const flushed: number[][] = [];
    const g = gate();
    const c = new Coalescer<number>(async (_k, items) => void flushed.push([...items]), { max: 3, delay: g.delay });
    const adds = [1, 2, 3, 4, 5].map((i) => c.add("q", i));
    g.open();
    await Promise.all(adds);
    expect(flushed).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it("rejects every adder of a batch whose flush failed, and later batches start afresh", async () => {
    let fail = true;
    const flushed: number[][] = [];
    const g1 = gate();
    let g = g1;
    const c = new Coalescer<number>(
      async (_k, items) => {
        if (fail) throw new Error("queue down");
        flushed.push([...items]);
      },
      { delay: () => g.delay() },
    );
    const a = c.add("q", 1).catch((e: unknown) => String(e));
    const b = c.add("q", 2).catch((e: unknown) => String(e));
    g1.open();
    expect(await Promise.all([a, b])).toEqual(["Error: queue down", "Error: queue down"]);
    fail = false;
    g = gate();
    const next = c.add("q", 3);
    g.open();
    await next;
    expect(flushed).toEqual([[3]]);
  });
});

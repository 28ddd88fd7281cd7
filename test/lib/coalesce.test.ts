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
  it("hands the items of one key over in one call, in arrival order; only the opener of a batch waits for it", async () => {
    const flushed: [string, number[]][] = [];
    const g = gate();
    const c = new Coalescer<number>(async (key, items) => void flushed.push([key, [...items]]), { delay: g.delay });
    const waits: Promise<unknown>[][] = [[], [], [], []];
    c.add("q", 1, (p) => waits[0]?.push(p));
    c.add("q", 2, (p) => waits[1]?.push(p));
    c.add("other", 9, (p) => waits[2]?.push(p));
    c.add("q", 3, (p) => waits[3]?.push(p));
    expect(waits.map((w) => w.length)).toEqual([1, 0, 1, 0]);
    await Promise.resolve();
    expect(flushed).toEqual([]);
    g.open();
    await Promise.all(waits.flat());
    expect(flushed).toContainEqual(["q", [1, 2, 3]]);
    expect(flushed).toContainEqual(["other", [9]]);
    expect(flushed).toHaveLength(2);
  });

  it("caps a batch at max items: the next item opens another batch, with its own opener", async () => {
    const flushed: number[][] = [];
    const g = gate();
    const c = new Coalescer<number>(async (_k, items) => void flushed.push([...items]), { max: 3, delay: g.delay });
    const waits: Promise<unknown>[] = [];
    for (const i of [1, 2, 3, 4, 5]) c.add("q", i, (p) => waits.push(p));
    expect(waits).toHaveLength(2);
    g.open();
    await Promise.all(waits);
    expect(flushed).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it("after a flush the next item starts a new batch", async () => {
    const flushed: number[][] = [];
    let g = gate();
    const c = new Coalescer<number>(async (_k, items) => void flushed.push([...items]), { delay: () => g.delay() });
    const first: Promise<unknown>[] = [];
    c.add("q", 1, (p) => first.push(p));
    g.open();
    await Promise.all(first);
    g = gate();
    const second: Promise<unknown>[] = [];
    c.add("q", 2, (p) => second.push(p));
    expect(second).toHaveLength(1);
    g.open();
    await Promise.all(second);
    expect(flushed).toEqual([[1], [2]]);
  });
});

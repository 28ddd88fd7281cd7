/**
 * Coalescing of small sends: the items of one isolate's concurrent requests that go to the same place
 * (a queue) are gathered for a short window and handed over in one call, instead of one call each. Used
 * for the funnel events of holds (analytics queue): one send per hold on the hot path before (issue 20).
 *
 * Only for bindings shared by the isolate's requests (queues): a Durable Object stub belongs to the request
 * that made it, and calls through one opener's stub on behalf of other requests failed in workerd
 * ("Cannot perform I/O on behalf of a different request", seen with `markOrdersSent`).
 *
 * Every adder gets a promise of its own settled with its batch's flush, so a request keeps it alive
 * (`waitUntil`) and sees its failure (the caller decides: count and log, or leave it to an outbox). The
 * flush runs in the I/O context of the request that opened the batch, which its own `waitUntil` keeps
 * alive until the flush is done.
 */
export class Coalescer<T> {
  private readonly pending = new Map<string, Batch<T>>();

  /**
   * @param flush hands one batch over (`key`: where it goes; `items` in arrival order, at most `max`).
   * @param opts `delayMs`: the window (default 20 ms); `max`: the most items of one batch (default 100,
   *   the Queues limit per `sendBatch`; more items open another batch); `delay`: replaces the timer (tests).
   */
  constructor(
    private readonly flush: (key: string, items: T[]) => Promise<void>,
    private readonly opts: { delayMs?: number; max?: number; delay?: () => Promise<void> } = {},
  ) {}

  /** Adds `item` to the batch of `key`; resolves (or rejects) with that batch's flush. */
  add(key: string, item: T): Promise<void> {
    let batch = this.pending.get(key);
    if (!batch) {
      const wait = this.opts.delay?.() ?? new Promise<void>((r) => setTimeout(r, this.opts.delayMs ?? 20));
      const b: Batch<T> = { items: [], done: Promise.resolve() };
      b.done = wait.then(async () => {
        if (this.pending.get(key) === b) this.pending.delete(key);
        // Nothing of the flush's result is passed on: a value made in the opener's I/O context (an RPC
        // result) must not reach the other requests.
        await this.flush(key, b.items);
      });
      this.pending.set(key, b);
      batch = b;
    }
    batch.items.push(item);
    // Full: the next item opens a new batch. This one still leaves when its window ends, from the request
    // that opened it: a batch is only ever flushed in its opener's I/O context.
    if (batch.items.length >= (this.opts.max ?? 100)) this.pending.delete(key);
    // A promise of this request's own, settled from the batch's: awaiting the batch's promise directly
    // would run this request's continuation in the I/O context of the request that opened the batch
    // (workerd: "Cannot perform I/O on behalf of a different request"; see lib/read-cache.ts).
    const done = batch.done;
    return new Promise<void>((resolve, reject) => {
      done.then(resolve, reject);
    });
  }
}

/** One batch being gathered: its items and its flush. */
interface Batch<T> {
  items: T[];
  done: Promise<void>;
}

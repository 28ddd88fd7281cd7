/**
 * Coalescing of small sends: the items of one isolate's concurrent requests that go to the same place
 * (a queue) are gathered for a short window and handed over in one call, instead of one call each. Used
 * for the funnel events of holds (analytics queue): one send per hold on the hot path before (issue 20).
 *
 * Nothing crosses from one request to another but the items (plain data): the request that opens a batch
 * runs its timer and its flush in its own I/O context and keeps them alive (`waitUntil`); the others only
 * add to it. So the flush handles its own failure (`flush` must not throw: it counts and logs, or leaves
 * the items to an outbox), and only for bindings every request shares (queues): a Durable Object stub
 * belongs to the request that made it (calls through one request's stub on behalf of others failed in
 * workerd: "Cannot perform I/O on behalf of a different request"), and a promise settled from another
 * request's context is dropped when the waiting request's context ends first ("IoContext dropped queued
 * cross-context actions").
 */
export class Coalescer<T> {
  private readonly pending = new Map<string, T[]>();

  /**
   * @param flush hands one batch over (`key`: where it goes; `items` in arrival order, at most `max`);
   *   reports its own failures.
   * @param opts `delayMs`: the window (default 20 ms); `max`: the most items of one batch (default 100,
   *   the Queues limit per `sendBatch`; more items open another batch); `delay`: replaces the timer (tests).
   */
  constructor(
    private readonly flush: (key: string, items: T[]) => Promise<void>,
    private readonly opts: { delayMs?: number; max?: number; delay?: () => Promise<void> } = {},
  ) {}

  /**
   * Adds `item` to the batch of `key`. The call that opens a batch hands `waitUntil` the batch's window and
   * flush (the others add to it and return).
   */
  add(key: string, item: T, waitUntil: (p: Promise<unknown>) => void): void {
    const open = this.pending.get(key);
    if (open) {
      open.push(item);
      // Full: the next item opens a new batch; this one leaves when its window ends.
      if (open.length >= (this.opts.max ?? 100)) this.pending.delete(key);
      return;
    }
    const items = [item];
    this.pending.set(key, items);
    const wait = this.opts.delay?.() ?? new Promise<void>((r) => setTimeout(r, this.opts.delayMs ?? 20));
    waitUntil(
      wait.then(() => {
        if (this.pending.get(key) === items) this.pending.delete(key);
        return this.flush(key, items);
      }),
    );
  }
}

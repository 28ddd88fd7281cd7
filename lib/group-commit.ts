/**
 * Group commit for a Durable Object's SQLite storage.
 *
 * A Durable Object commits the writes made between two awaits as one implicit transaction, and holds every
 * answer until that commit is durable (the output gate). One hold per turn means one commit per hold, and
 * the commit (locally a file sync, on Cloudflare a replicated log write) costs more than the statements.
 * A {@link GroupCommit} defers each call it is given to the next macrotask, so the calls that arrive
 * meanwhile run back to back in one turn: their writes share one commit, and all their answers leave
 * together once it is durable. Each call still runs alone and in arrival order (JavaScript runs one at a
 * time), so nothing it decides can see another call's partial state; what changes is only how many
 * answers one commit releases. The cost is one macrotask of latency per call.
 */
export class GroupCommit {
  private readonly gather: Gather<{ fn: () => unknown; items: number }, { ok: true; value: unknown } | { ok: false; error: unknown }>;

  /** @param observe Called with each group's size in items (metrics). */
  constructor(observe?: (size: number) => void) {
    this.gather = new Gather(async (calls) => {
      const items = calls.reduce((n, c) => n + c.items, 0);
      if (items) observe?.(items);
      return calls.map(({ fn }) => {
        try {
          return { ok: true, value: fn() };
        } catch (error) {
          return { ok: false, error };
        }
      });
    });
  }

  /**
   * Runs `fn` with the calls that arrive before the next macrotask; resolves with its value (or its error).
   * `items`: how many requests the call carries (a batched call carries several; 0 for bookkeeping that
   * rides along), for the metric.
   */
  async run<T>(fn: () => T, items = 1): Promise<T> {
    const done = await this.gather.add({ fn, items });
    if (!done.ok) throw done.error;
    return done.value as T;
  }
}

/**
 * Gathers the items added before the next macrotask and hands them to `process` together, which may do
 * I/O first (a Durable Object asking another object about all of them in one call) and then decide each;
 * each `add` resolves with `process`'s answer at its index, or rejects with its error.
 */
export class Gather<T, R> {
  private pending: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];

  constructor(private readonly process: (items: T[]) => Promise<R[]>) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (this.pending.length === 1) setTimeout(() => void this.flush(), 0);
    });
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    try {
      const answers = await this.process(batch.map((b) => b.item));
      batch.forEach((b, i) => {
        b.resolve(answers[i] as R);
      });
    } catch (err) {
      for (const b of batch) b.reject(err);
    }
  }
}

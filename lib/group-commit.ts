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
  private pending: (() => void)[] = [];

  /** @param observe Called with each group's size (metrics). */
  constructor(private readonly observe?: (size: number) => void) {}

  /** Runs `fn` with the calls that arrive before the next macrotask; resolves with its value (or its error). */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push(() => {
        try {
          resolve(fn());
        } catch (err) {
          reject(err);
        }
      });
      if (this.pending.length === 1) setTimeout(() => this.flush(), 0);
    });
  }

  private flush(): void {
    const group = this.pending;
    this.pending = [];
    this.observe?.(group.length);
    for (const call of group) call();
  }
}

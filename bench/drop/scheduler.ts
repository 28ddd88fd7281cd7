/**
 * The drop's one timer. Every wait of the run (a buyer's arrival, a poll after `pollAfterSeconds`, a retry
 * after `Retry-After`, the progress line) is an entry in one binary heap, and a single `setTimeout` is
 * armed for the earliest entry: 20,000 buyers cost one Node timer, not 20,000.
 *
 * It also measures its own lag: how late each entry fires past the moment it was due. On a client that
 * keeps up this is a millisecond or two; when the client's event loop is saturated it grows to seconds,
 * and every latency the drop records then includes that wait (the report says so: see `lagBound`).
 */

interface Entry {
  at: number;
  seq: number;
  resolve: () => void;
}

/** Lateness figures of the entries that fired in one interval (ms). */
export interface LagFigures {
  fired: number;
  p50: number;
  p99: number;
  max: number;
}

export const lagFigures = (late: number[]): LagFigures => {
  if (!late.length) return { fired: 0, p50: 0, p99: 0, max: 0 };
  late.sort((a, b) => a - b);
  const pct = (p: number) => late[Math.min(late.length - 1, Math.floor(p * late.length))] as number;
  return { fired: late.length, p50: Math.round(pct(0.5)), p99: Math.round(pct(0.99)), max: Math.round(late.at(-1) as number) };
};

export class Scheduler {
  private readonly heap: Entry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private armedAt = Number.POSITIVE_INFINITY;
  private seq = 0;
  private late: number[] = [];
  private closed = false;
  /** ms on the run's clock (the recorder's: since the origin). */
  readonly now: () => number;
  constructor(now: () => number) {
    this.now = now;
  }

  /** Resolves at `t` on the run's clock (at once, in a later microtask, when `t` is past). */
  at(t: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.closed) return resolve();
      this.push({ at: t, seq: this.seq++, resolve });
      this.arm();
    });
  }

  /** Resolves `ms` from now. */
  sleep(ms: number): Promise<void> {
    return this.at(this.now() + Math.max(0, ms));
  }

  /** How late the entries fired since the last call (ms each), and forgets them. */
  takeLateness(): number[] {
    const l = this.late;
    this.late = [];
    return l;
  }

  /** Entries waiting. */
  get pending(): number {
    return this.heap.length;
  }

  /** Fires everything still waiting and stops the timer. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const e of this.heap.splice(0)) e.resolve();
  }

  private arm(): void {
    const first = this.heap[0];
    if (!first || first.at >= this.armedAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedAt = first.at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, first.at - this.now()));
  }

  private fire(): void {
    this.timer = undefined;
    this.armedAt = Number.POSITIVE_INFINITY;
    const n = this.now();
    for (let e = this.heap[0]; e && e.at <= n; e = this.heap[0]) {
      this.pop();
      this.late.push(n - e.at);
      e.resolve();
    }
    this.arm();
  }

  private less(a: Entry, b: Entry): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i] as Entry, h[p] as Entry)) break;
      [h[i], h[p]] = [h[p] as Entry, h[i] as Entry];
      i = p;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop() as Entry;
    if (!h.length) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l] as Entry, h[m] as Entry)) m = l;
      if (r < h.length && this.less(h[r] as Entry, h[m] as Entry)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m] as Entry, h[i] as Entry];
      i = m;
    }
  }
}

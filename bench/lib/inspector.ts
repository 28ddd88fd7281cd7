/**
 * A minimal client of workerd's V8 inspector (Chrome DevTools Protocol over WebSocket), opened when the
 * server runs with `INSPECTOR_PORT` (scripts/serve.ts). Used to sample the Worker isolate's heap while a
 * load runs: how much it grows per request, and how often a major collection empties it.
 */

/** One isolate's debugging session. */
export interface InspectorSession {
  heapUsedBytes(): Promise<number>;
  close(): void;
}

interface Target {
  title: string;
  webSocketDebuggerUrl: string;
}

/** Connects to the isolate whose inspector title contains `titlePart` (miniflare names it `core:user:<worker>`). */
export async function connectInspector(port: number, titlePart = "core:user:"): Promise<InspectorSession> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as Target[];
  const target = targets.find((t) => t.title.includes(titlePart));
  if (!target) throw new Error(`no inspector target named like ${titlePart} on port ${port}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve());
    ws.addEventListener("error", () => reject(new Error("inspector connection failed")));
  });
  let nextId = 0;
  const pending = new Map<number, (result: unknown) => void>();
  ws.addEventListener("message", (e) => {
    const msg = JSON.parse(String(e.data)) as { id?: number; result?: unknown };
    if (msg.id === undefined) return;
    pending.get(msg.id)?.(msg.result);
    pending.delete(msg.id);
  });
  const send = (method: string): Promise<unknown> =>
    new Promise((resolve) => {
      const id = ++nextId;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method }));
    });
  return {
    heapUsedBytes: async () => ((await send("Runtime.getHeapUsage")) as { usedSize: number }).usedSize,
    close: () => ws.close(),
  };
}

/** Heap figures of one sampled run. */
export interface HeapTrace {
  samples: number;
  /** Sum of the increases between samples (allocation that survived to the next sample). */
  grownBytes: number;
  /**
   * Falls of more than `bigDropBytes` between two samples: collections that freed that much at once (a major
   * collection, or a scavenge of a large young generation; the heap usage alone cannot tell them apart).
   */
  largeDrops: number;
  minBytes: number;
  maxBytes: number;
}

/** Samples the heap every `everyMs` until `until` settles, then sums it up. */
export async function traceHeap(session: InspectorSession, until: Promise<unknown>, everyMs = 100, bigDropBytes = 5e6): Promise<HeapTrace> {
  let done = false;
  void until.finally(() => {
    done = true;
  });
  const used: number[] = [];
  while (!done) {
    used.push(await session.heapUsedBytes());
    await new Promise((r) => setTimeout(r, everyMs));
  }
  let grownBytes = 0;
  let largeDrops = 0;
  for (let i = 1; i < used.length; i++) {
    const d = (used[i] as number) - (used[i - 1] as number);
    if (d > 0) grownBytes += d;
    else if (d < -bigDropBytes) largeDrops++;
  }
  return { samples: used.length, grownBytes, largeDrops, minBytes: Math.min(...used), maxBytes: Math.max(...used) };
}

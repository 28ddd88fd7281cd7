/**
 * A minimal client of workerd's V8 inspector (Chrome DevTools Protocol over WebSocket), opened when the
 * server runs with `INSPECTOR_PORT` (scripts/serve.ts). Used to sample the Worker isolate's heap while a
 * load runs: how much it grows per request, and how often a major collection empties it.
 */

/** One isolate's debugging session. */
export interface InspectorSession {
  heapUsedBytes(): Promise<number>;
  /** One DevTools Protocol command; resolves with its result (or its error object). */
  command(method: string, params?: Record<string, unknown>): Promise<unknown>;
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
    const msg = JSON.parse(String(e.data)) as { id?: number; result?: unknown; error?: unknown };
    if (msg.id === undefined) return;
    pending.get(msg.id)?.(msg.result ?? msg.error);
    pending.delete(msg.id);
  });
  const send = (method: string, params: Record<string, unknown> = {}): Promise<unknown> =>
    new Promise((resolve) => {
      const id = ++nextId;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  return {
    heapUsedBytes: async () => ((await send("Runtime.getHeapUsage")) as { usedSize: number }).usedSize,
    command: send,
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

/** What outlived the young generation during a run, per request: the garbage left for a mark-compact. */
export interface Survivors {
  /** Sampled bytes per request of objects that no scavenge freed (alive at the end, or freed by a mark-compact). */
  bytesPerRequest: number;
  /** Of which allocated by the runtime itself (V8's `(V8 API)` frame: the wrappers of Request, Response, Headers…). */
  runtimeBytesPerRequest: number;
  /** The Worker's functions that allocated the most of it (self bytes per request, `name file:line`). */
  top: { fn: string; bytesPerRequest: number }[];
}

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children?: SamplingNode[];
}

/**
 * V8's sampling heap profiler while `during` runs, keeping the samples that a mark-compact freed and dropping
 * those a scavenge freed (`includeObjectsCollectedByMajorGC`, not `…MinorGC`): where the objects come from that
 * survive the young generation and wait for a mark-compact, whose pauses decide bench/catalog's strict rule.
 *
 * `during` resolves when sampling should stop, with the requests answered since it started and, optionally,
 * a promise to await after the stop (the rest of a load). Stop right after a scavenge: whatever the young
 * generation holds at the stop counts as surviving, and at 16 MB that can be hundreds of bytes per request.
 * Sampled every `intervalBytes` on average, so the figures are estimates.
 */
export async function sampleSurvivors(
  session: InspectorSession,
  during: () => Promise<{ requests: number; after?: Promise<unknown> }>,
  intervalBytes = 256,
): Promise<Survivors> {
  await session.command("HeapProfiler.enable");
  await session.command("HeapProfiler.startSampling", {
    samplingInterval: intervalBytes,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: false,
  });
  const { requests: sent, after } = await during();
  const stopped = (await session.command("HeapProfiler.stopSampling")) as { profile?: { head: SamplingNode } };
  await session.command("HeapProfiler.disable");
  await after;
  if (!stopped.profile) throw new Error(`HeapProfiler.stopSampling: ${JSON.stringify(stopped)}`);
  const byFunction = new Map<string, number>();
  let total = 0;
  let runtime = 0;
  const walk = (node: SamplingNode): void => {
    const f = node.callFrame;
    if (node.selfSize > 0) {
      total += node.selfSize;
      if (f.functionName === "(V8 API)") runtime += node.selfSize;
      else if (f.url) {
        const fn = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}:${f.lineNumber + 1}`;
        byFunction.set(fn, (byFunction.get(fn) ?? 0) + node.selfSize);
      }
    }
    for (const c of node.children ?? []) walk(c);
  };
  walk(stopped.profile.head);
  const perRequest = (bytes: number) => Math.round(bytes / Math.max(1, sent));
  return {
    bytesPerRequest: perRequest(total),
    runtimeBytesPerRequest: perRequest(runtime),
    top: [...byFunction]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([fn, bytes]) => ({ fn, bytesPerRequest: perRequest(bytes) })),
  };
}

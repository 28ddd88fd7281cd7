/**
 * The drop's history: what the buyers saw (every request with its answer or its error), when the fault
 * windows were open, and the phases of the run. The checker (checker.ts) reads only this and the final
 * state the public and admin API return at the end (FinalState); never the server's internals.
 * Times are milliseconds since the run's origin (the moment buyers could start arriving).
 */

/** What a buyer's request was for. */
export type Step = "auth" | "event" | "seatmap" | "join" | "poll" | "hold" | "pay" | "order";

export const STEPS: readonly Step[] = ["auth", "event", "seatmap", "join", "poll", "hold", "pay", "order"];

/** What the drop learned from a 2xx answer (only the fields the checker and the report need). */
export interface Seen {
  /** join/poll */
  state?: "waiting" | "admitted";
  position?: number;
  soldOut?: boolean;
  /** hold */
  holdId?: string;
  /** hold, pay, order */
  sectionId?: string;
  seats?: string[];
  quantity?: number;
  total?: number;
  /** pay, order */
  orderId?: string;
  orderStatus?: string;
  tickets?: number;
}

/** One request and its outcome. */
export interface RequestRecord {
  kind: "request";
  /** The drop's own id for this request (unique in the history). */
  id: number;
  buyer: string;
  step: Step;
  method: string;
  path: string;
  /** Attempt number of this step (1 = first try). */
  attempt: number;
  /** When the request went on the wire (and its latency runs from here). */
  start: number;
  end: number;
  /** ms it waited on the client for a slot among the requests in flight before `start` (absent: none). */
  wait?: number;
  /** HTTP status, when an answer came. */
  status?: number;
  /** The problem document's `code` of an error answer. */
  code?: string;
  /** The answer's X-Request-Id. */
  requestId?: string;
  /** Retry-After of the answer (seconds). */
  retryAfter?: number;
  /** No answer: why (timeout, connection refused, reset…). */
  error?: string;
  /** Idempotency-Key sent, if any. */
  idempotencyKey?: string;
  /** The payment token of a pay request. */
  token?: string;
  seen?: Seen;
}

/** A fault window (or the kill: from SIGKILL to the restarted server answering). */
export interface FaultRecord {
  kind: "fault";
  name: string;
  start: number;
  end: number;
  detail?: string;
}

/** A phase boundary of the run. */
export interface PhaseRecord {
  kind: "phase";
  name: "arrivals" | "opening" | "sold_out" | "sale_end" | "drain" | "drained" | "replay";
  at: number;
  detail?: string;
}

/**
 * A buyer that arrived while the client already ran its bound of live buyers, and waited in the client's
 * backlog: arrived at its planned time, started at `started` (absent: the sale ended first). The arrival
 * model stays open (arrival times are fixed in advance); this says by how much the client delayed it.
 */
export interface BacklogRecord {
  kind: "backlog";
  buyer: string;
  arrived: number;
  started?: number;
}

/**
 * The client's own state, once a second: how late its timers fired in that second (lateness of the
 * scheduler's entries, ms), buyers live and in the backlog, requests in flight and waiting for a slot,
 * the CPU the client and the server used.
 */
export interface ClientRecord {
  kind: "client";
  at: number;
  lag: { fired: number; p50: number; p99: number; max: number };
  live: number;
  backlog: number;
  inFlight: number;
  queued: number;
  /**
   * CPU used in that second, in cores: the drop's own process, and the server's workerd (absent with
   * --url, or while it restarts). Beside the machine's load average, this tells a server short of CPU
   * (others' work on the machine) from one that is slow at the CPU it gets.
   */
  cpu: { client: number; server?: number };
}

export type HistoryRecord = RequestRecord | FaultRecord | PhaseRecord | BacklogRecord | ClientRecord;

/** A recorded history with the facts of the event that the buyers read through the API. */
export interface History {
  eventId: string;
  /** Epoch ms of t = 0. */
  origin: number;
  /** t of the sale's opening (saleStartsAt). */
  openAt: number;
  perCustomerLimit: number;
  /** Capacity per section, from the event document. */
  capacity: Record<string, number>;
  records: HistoryRecord[];
}

/** What the public and admin API answer at the end, after the queues drained. */
export interface FinalState {
  /** GET /v1/events/:id/availability */
  availability: { id: string; available: number; held: number; sold: number; capacity: number }[];
  /** GET /v1/events/:id/sections/:sid/seats, per seated section */
  seatMaps: Record<string, { id: string; status: "available" | "held" | "sold" }[]>;
  /** POST /v1/admin/reconciliation/:id?graceMs=0 */
  reconciliation: { soldInInventory: number; storedInShards: number; missing: string[]; extra: string[]; duplicated: string[] };
  /** GET /v1/admin/payments/sandbox/charges (this event's charges: their order id names the event) */
  charges: { idempotencyKey: string; chargeId: string; amount: number; status: "succeeded" | "refunded"; chargedAt?: string }[];
  /** GET /v1/orders (each buyer who tried to pay, from the buyer's shard): order ids with section, seats and quantity */
  shardOrders: Record<string, { id: string; sectionId: string; seats: string[]; quantity: number; total: number }[]>;
  /** GET /v1/admin/dead-letters?queue=orders&status=dead: how many remain */
  deadLetters: number;
}

/** Records the history; `now()` is ms since the origin. */
export class Recorder {
  readonly records: HistoryRecord[] = [];
  private nextId = 1;
  readonly origin: number;
  constructor(origin: number) {
    this.origin = origin;
  }
  now(): number {
    return Date.now() - this.origin;
  }
  request(r: Omit<RequestRecord, "kind" | "id">): RequestRecord {
    const rec: RequestRecord = { kind: "request", id: this.nextId++, ...r };
    this.records.push(rec);
    return rec;
  }
  fault(name: string, start: number, end: number, detail?: string): void {
    this.records.push({ kind: "fault", name, start, end, ...(detail ? { detail } : {}) });
  }
  backlog(r: Omit<BacklogRecord, "kind">): void {
    this.records.push({ kind: "backlog", ...r });
  }
  client(r: Omit<ClientRecord, "kind">): void {
    this.records.push({ kind: "client", ...r });
  }
  phase(name: PhaseRecord["name"], detail?: string): void {
    this.records.push({ kind: "phase", name, at: this.now(), ...(detail ? { detail } : {}) });
  }
}

/** The order id a sandbox charge's idempotency key belongs to (`<orderId>:<attempt>`). */
export const orderIdOfCharge = (idempotencyKey: string): string => idempotencyKey.replace(/:\d+$/, "");

import { exports } from "cloudflare:workers";
import type { Role } from "../lib/auth";

/** Calls the Worker under test (in the same isolate as the test). */
export function call(path: string, init: RequestInit & { token?: string; json?: unknown } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    if (!headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  }
  return exports.default.fetch(new Request(`https://breakwater.test${path}`, { ...init, headers, body }));
}

/** A dev token for `sub` with `role` (DEV_AUTH is on in tests). */
export async function tokenFor(sub: string, role: Role = "buyer"): Promise<string> {
  const res = await call("/v1/auth/dev-token", { method: "POST", json: { sub, role } });
  if (res.status !== 200) throw new Error(`dev-token failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

/** A valid event body; `over` replaces top-level fields. */
export function eventInput(over: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Date.now();
  return {
    name: "Night Drive",
    venue: "Hall 7",
    startsAt: new Date(now + 30 * 86_400_000).toISOString(),
    saleStartsAt: new Date(now - 60_000).toISOString(),
    currency: "EUR",
    perCustomerLimit: 4,
    sections: [
      { id: "floor", name: "Floor", kind: "ga", price: 5000, capacity: 100, shards: 2 },
      {
        id: "a",
        name: "Block A",
        kind: "seated",
        price: 8000,
        rows: [
          { id: "1", seats: 5 },
          { id: "2", seats: 5 },
        ],
      },
    ],
    ...over,
  };
}

/** Creates an event as `organizer` and returns its document. */
export async function createEvent(organizerToken: string, over: Record<string, unknown> = {}): Promise<EventBody> {
  const res = await call("/v1/events", { method: "POST", token: organizerToken, json: eventInput(over) });
  if (res.status !== 201) throw new Error(`create event failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { event: EventBody }).event;
}

/** The parts of an event document tests read. */
export interface EventBody {
  id: string;
  name: string;
  version: number;
  sections: { id: string; kind: "seated" | "ga"; capacity: number; price: number; shards?: number }[];
  [k: string]: unknown;
}

/** The parsed problem document of a response. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  requestId: string;
  errors?: { path: string; message: string }[];
}

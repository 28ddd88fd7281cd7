/**
 * Schema-derived fuzzing of a running Breakwater (`npm run fuzz`).
 *
 * Reads the served OpenAPI document (/openapi.json, generated from the zod schemas that validate the
 * requests), and for every operation sends requests that are certainly invalid: one schema violation at a
 * time in a valid body (wrong type, out of range, too long or short, pattern or enum or format broken, a
 * required field missing, an unknown field where none is allowed, arrays too short or long), bodies that
 * are not the schema's shape at all (fast-check's `anything`), malformed JSON, a wrong Content-Type,
 * crafted path parameters and query values, and missing, malformed or wrong-role tokens. Each answer must
 * be a 4xx problem document (RFC 9457): it counts 5xx, non-problem errors and unsafe requests accepted
 * (2xx/3xx). Before and after, it reads the state through the API (event list, the fixture event, its
 * availability and seat map, a hold, an order, the organizer's webhook, dead letters) and reports any change.
 *
 * Env: FUZZ_URL (an instance to fuzz; default: start one on a free port like `npm run serve`, rate limits
 * off so requests reach validation), FUZZ_REQUESTS (5000), FUZZ_SEED (1), FUZZ_CONCURRENCY (8),
 * FUZZ_JWT_SECRET (the instance's, to mint an expired token; optional). Exit code 1 on any finding.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { mulberry32 } from "../bench/lib/zipf.ts";

/** A JSON Schema node as zod's toJSONSchema writes them (the parts the fuzzer reads). */
export interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  pattern?: string;
  format?: string;
  enum?: unknown[];
  const?: unknown;
  oneOf?: Schema[];
  anyOf?: Schema[];
}

interface Operation {
  method: string;
  path: string;
  roles: string[];
  secured: boolean;
  body?: Schema;
  params: { name: string; in: string; schema: Schema }[];
}

/** What one fuzz request is. */
export interface FuzzCase {
  op: string;
  kind: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** Result of a run. */
export interface FuzzReport {
  requests: number;
  histogram: Record<string, number>;
  byKind: Record<string, number>;
  serverErrors: { case: FuzzCase; status: number; body: string }[];
  nonProblem: { case: FuzzCase; status: number; contentType: string; body: string }[];
  acceptedUnsafe: { case: FuzzCase; status: number; body: string }[];
  transportErrors: { case: FuzzCase; error: string }[];
  stateChanged: { what: string; before: unknown; after: unknown }[];
  seconds: number;
}

// ───────────────────────────── a seeded random source ─────────────────────────────

/** The fuzzer's seeded random source (the benches' mulberry32). */
const rng = mulberry32;

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
/** One value of a fast-check arbitrary, seeded from `r`. */
const sample = <T>(r: Rand, arb: fc.Arbitrary<T>): T => fc.sample(arb, { seed: Math.floor(r() * 2 ** 31), numRuns: 1 })[0] as T;

// ───────────────────────────── schema-derived mutations ─────────────────────────────

const JSON_TYPES = ["string", "number", "integer", "boolean", "null", "object", "array"] as const;

function typesOf(s: Schema): string[] {
  if (s.const !== undefined) return [typeof s.const === "number" ? "number" : typeof s.const];
  if (s.type) return Array.isArray(s.type) ? s.type : [s.type];
  const variants = s.oneOf ?? s.anyOf;
  if (variants) return variants.flatMap(typesOf);
  return [...JSON_TYPES];
}

/** A value of a JSON type `s` does not allow. */
function wrongType(r: Rand, s: Schema): unknown | undefined {
  const allowed = new Set(typesOf(s));
  if (allowed.has("number")) allowed.add("integer");
  const candidates: [string, () => unknown][] = [
    ["string", () => sample(r, fc.string({ maxLength: 20 }))],
    ["number", () => sample(r, fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e9, max: 1e9 })) + 0.5],
    ["integer", () => sample(r, fc.integer())],
    ["boolean", () => r() < 0.5],
    ["null", () => null],
    ["object", () => sample(r, fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }))],
    ["array", () => sample(r, fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }))],
  ];
  const options = candidates.filter(([t]) => !allowed.has(t) && !(t === "integer" && allowed.has("number")));
  if (allowed.has("integer") && !allowed.has("number"))
    options.push(["number", () => sample(r, fc.integer({ min: -1000, max: 1000 })) + 0.5]);
  if (options.length === 0) return undefined;
  return pick(r, options)[1]();
}

/** The variant of a oneOf/anyOf that `value` was built for (by its const fields), else the first. */
function variantFor(s: Schema, value: unknown): Schema {
  const variants = s.oneOf ?? s.anyOf;
  if (!variants) return s;
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const v = value as Record<string, unknown>;
    const found = variants.find((x) => Object.entries(x.properties ?? {}).every(([k, p]) => p.const === undefined || p.const === v[k]));
    if (found) return found;
  }
  return variants[0] as Schema;
}

const DELETE = Symbol("delete");
type Mutation = { path: (string | number)[]; kind: string; make: (r: Rand) => unknown };

/** Every single-point violation of `s` reachable from `value` (a valid instance). */
function mutations(s0: Schema, value: unknown, at: (string | number)[] = []): Mutation[] {
  const s = variantFor(s0, value);
  const out: Mutation[] = [];
  out.push({ path: at, kind: "wrong-type", make: (r) => wrongType(r, s) });
  const types = typesOf(s);
  if (s.enum || s.const !== undefined) {
    const allowed = s.enum ?? [s.const];
    out.push({
      path: at,
      kind: "not-in-enum",
      make: (r) =>
        sample(
          r,
          fc.string({ minLength: 1, maxLength: 30 }).filter((x) => !allowed.includes(x)),
        ),
    });
  }
  if (types.includes("string")) {
    if (s.maxLength !== undefined) {
      const max = s.maxLength;
      out.push({ path: at, kind: "too-long", make: (r) => "x".repeat(max + 1 + Math.floor(r() * 50)) });
    }
    if ((s.minLength ?? 0) > 0) out.push({ path: at, kind: "too-short", make: () => "" });
    if (s.pattern) {
      const re = new RegExp(s.pattern, "u");
      out.push({
        path: at,
        kind: "pattern",
        make: (r) =>
          sample(
            r,
            fc.string({ unit: pick(r, ["grapheme", "binary", "grapheme-ascii"] as const), maxLength: 40 }).filter((x) => !re.test(x)),
          ),
      });
    }
    if (s.format === "uri") out.push({ path: at, kind: "format", make: (r) => pick(r, ["not a url", "::", "http//x", "/relative"]) });
    if (s.format === "date-time")
      out.push({ path: at, kind: "format", make: (r) => pick(r, ["2026-13-45T25:61:00Z", "tomorrow", "2026-02-30T10:00:00Z", "1e12"]) });
  }
  if (types.includes("integer") || types.includes("number")) {
    if (s.minimum !== undefined) {
      const min = s.minimum;
      out.push({ path: at, kind: "below-minimum", make: (r) => min - 1 - Math.floor(r() * 1e6) });
    }
    if (s.maximum !== undefined) {
      const max = s.maximum;
      out.push({ path: at, kind: "above-maximum", make: (r) => max + 1 + Math.floor(r() * 1e9) });
    }
    if (types.includes("integer") && !types.includes("number"))
      out.push({ path: at, kind: "not-integer", make: (r) => Math.floor(r() * 100) + 0.5 });
  }
  if (Array.isArray(value)) {
    if ((s.minItems ?? 0) > 0) out.push({ path: at, kind: "too-few-items", make: () => value.slice(0, (s.minItems as number) - 1) });
    if (s.maxItems !== undefined && value.length > 0) {
      const max = s.maxItems;
      out.push({ path: at, kind: "too-many-items", make: () => Array.from({ length: max + 1 }, (_, i) => value[i % value.length]) });
    }
    if (s.items && value.length > 0) out.push(...mutations(s.items, value[0], [...at, 0]));
  } else if (value && typeof value === "object") {
    const v = value as Record<string, unknown>;
    for (const key of s.required ?? []) if (key in v) out.push({ path: [...at, key], kind: "missing-required", make: () => DELETE });
    if (s.additionalProperties === false)
      out.push({ path: [...at, "zzUnknownField"], kind: "unknown-field", make: (r) => sample(r, fc.jsonValue({ maxDepth: 1 })) });
    for (const [key, ps] of Object.entries(s.properties ?? {})) if (key in v) out.push(...mutations(ps, v[key], [...at, key]));
  }
  return out;
}

function applyAt(base: unknown, p: (string | number)[], value: unknown): unknown {
  if (p.length === 0) return value;
  const copy = structuredClone(base) as Record<string | number, unknown>;
  let node = copy;
  for (const k of p.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  const last = p[p.length - 1] as string | number;
  if (value === DELETE) delete node[last];
  else node[last] = value;
  return copy;
}

// ───────────────────────────── the instance and its fixtures ─────────────────────────────

interface Fixtures {
  tokens: Record<string, string> & { buyer: string };
  /** A second buyer, for another buyer's resources. */
  otherBuyer: string;
  expired?: string;
  eventId: string;
  holdId: string;
  orderId: string;
  /** Valid bodies per operation key ("POST /v1/events"). */
  bodies: Record<string, unknown>;
  /** Valid path parameter values per operation key. */
  params: Record<string, Record<string, string>>;
}

async function json<T>(res: Response, what: string): Promise<T> {
  if (!res.ok) throw new Error(`${what}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function setUp(base: string, secret?: string): Promise<Fixtures> {
  const token = async (sub: string, role: string) =>
    (await json<{ token: string }>(await fetch(`${base}/v1/auth/dev-token`, post({ sub, role })), "dev-token")).token;
  const tokens = {
    buyer: await token("fuzz-buyer", "buyer"),
    organizer: await token("fuzz-org", "organizer"),
    admin: await token("fuzz-admin", "admin"),
  };
  const otherBuyer = await token("fuzz-buyer-2", "buyer");
  const now = Date.now();
  const eventBody = {
    name: "Fuzz Night",
    venue: "Hall F",
    startsAt: new Date(now + 30 * 86_400_000).toISOString(),
    saleStartsAt: new Date(now - 60_000).toISOString(),
    currency: "EUR",
    perCustomerLimit: 6,
    sections: [
      { id: "floor", name: "Floor", kind: "ga", price: 5000, capacity: 50, shards: 2 },
      { id: "a", name: "Block A", kind: "seated", price: 8000, rows: [{ id: "1", seats: 5 }] },
    ],
  };
  const { event } = await json<{ event: { id: string } }>(
    await fetch(`${base}/v1/events`, post(eventBody, tokens.organizer)),
    "create event",
  );
  const hold = async (t: string) =>
    (
      await json<{ hold: { id: string } }>(
        await fetch(`${base}/v1/events/${event.id}/holds`, post({ sectionId: "floor", quantity: 1 }, t)),
        "hold",
      )
    ).hold.id;
  const holdId = await hold(tokens.buyer);
  const paid = await hold(tokens.buyer);
  const { order } = await json<{ order: { id: string; tickets: { id: string; code: string }[] } }>(
    await fetch(`${base}/v1/orders`, post({ holdId: paid, payment: { method: "sandbox", token: "tok_ok" } }, tokens.buyer)),
    "order",
  );
  let expired: string | undefined;
  if (secret) {
    const { sign } = await import("hono/utils/jwt/jwt");
    expired = await sign({ sub: "fuzz-buyer", role: "buyer", exp: Math.floor(now / 1000) - 60 }, secret, "HS256");
  }
  return {
    tokens,
    otherBuyer,
    expired,
    eventId: event.id,
    holdId,
    orderId: order.id,
    bodies: {
      "POST /v1/events": eventBody,
      "PATCH /v1/events/{id}": { name: "Fuzz Night II", venue: "Hall G" },
      "POST /v1/events/{id}/holds": { sectionId: "floor", quantity: 1 },
      "POST /v1/orders": { holdId, payment: { method: "sandbox", token: "tok_ok" } },
      "POST /v1/auth/dev-token": { sub: "fuzz-x", role: "buyer" },
      "PUT /v1/organizers/me/webhook": { url: "https://hooks.example.com/breakwater", events: ["order.paid"] },
      "POST /v1/admin/dead-letters/replay": { queue: "breakwater-orders", ids: ["dl-1"] },
      "PUT /v1/admin/faults": { name: "payments", seconds: 10 },
      "POST /v1/events/{id}/check-ins": { code: order.tickets[0]?.code ?? "" },
    },
    params: {
      "*": { id: event.id, sectionId: "a" },
      "GET /v1/holds/{id}": { id: holdId },
      "DELETE /v1/holds/{id}": { id: holdId },
      "GET /v1/orders/{id}": { id: order.id },
      "GET /v1/tickets/{id}": { id: order.tickets[0]?.id ?? "" },
      "GET /v1/tickets/{id}/qr.svg": { id: order.tickets[0]?.id ?? "" },
    },
  };
}

function post(body: unknown, token?: string): RequestInit {
  return {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  };
}

function operations(doc: { paths: Record<string, Record<string, Record<string, unknown>>> }): Operation[] {
  const ops: Operation[] = [];
  for (const [p, methods] of Object.entries(doc.paths))
    for (const [method, o] of Object.entries(methods)) {
      const body = (o.requestBody as { content?: Record<string, { schema?: Schema }> } | undefined)?.content?.["application/json"]?.schema;
      ops.push({
        method: method.toUpperCase(),
        path: p,
        roles: (o["x-roles"] as string[] | undefined) ?? [],
        secured: Array.isArray(o.security) && o.security.length > 0,
        body,
        params: ((o.parameters as Operation["params"] | undefined) ?? []).filter((x) => x.in === "path" || x.in === "query"),
      });
    }
  return ops;
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** Crafted path parameter values: traversal, injection, encodings, huge, control and odd Unicode. */
const CRAFTED_IDS = [
  "..",
  "%2e%2e",
  "evt_" + "a".repeat(300),
  "' OR 1=1 --",
  "<script>",
  "\u0000",
  "\u202E",
  "\ud800",
  "hld_nope",
  "ord_nope",
  "evt_nope",
  "hld_abc.evt_nope.floor.0",
  "x".repeat(5_000),
  "null",
  "0",
  "-1",
  "🎸",
  // Sent as they are, not percent-encoded again: invalid UTF-8 and broken escapes.
  "raw:%ED%A0%80",
  "raw:%ff%fe",
  "raw:%",
  "raw:%00",
  "raw:a%2Fb",
];

/** Percent-encodes a path segment; `raw:` values go as they are, a lone surrogate as its (invalid) UTF-8 bytes. */
function segment(v: string): string {
  if (v.startsWith("raw:")) return v.slice(4);
  try {
    return encodeURIComponent(v);
  } catch {
    return encodeURIComponent(v.toWellFormed()).replaceAll("%EF%BF%BD", "%ED%A0%80");
  }
}

/** Builds the `n`-th case for `op`: a body violation, a shape-less body, a crafted id, a bad token… */
function buildCase(r: Rand, base: string, op: Operation, fx: Fixtures): FuzzCase | null {
  const key = `${op.method} ${op.path}`;
  const role = op.roles[0] ?? "buyer";
  const goodToken = fx.tokens[role] ?? (fx.tokens.buyer as string);
  const params = { ...fx.params["*"], ...fx.params[key] } as Record<string, string>;
  const goodBody = fx.bodies[key];
  const kinds: string[] = [];
  if (op.body && goodBody !== undefined) kinds.push("body", "body", "body", "body", "body", "body-shape", "malformed-json", "content-type");
  if (op.params.some((p) => p.in === "path")) kinds.push("path-param", "path-param");
  if (op.params.some((p) => p.in === "query")) kinds.push("query");
  if (op.secured) kinds.push("auth");
  if (op.secured && op.roles.length > 0 && op.roles.length < 3) kinds.push("role");
  if (kinds.length === 0) return null;
  const kind = pick(r, kinds);

  let url = base + op.path.replace(/\{(\w+)\}/g, (_, n: string) => segment(params[n] ?? "x"));
  const headers: Record<string, string> = { Authorization: `Bearer ${goodToken}` };
  let body: string | undefined;
  if (op.body && goodBody !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(goodBody);
  }
  let detail = kind;
  switch (kind) {
    case "body": {
      const all = mutations(op.body as Schema, goodBody);
      const m = pick(r, all);
      const value = m.make(r);
      if (value === undefined) return null;
      body = JSON.stringify(applyAt(goodBody, m.path, value));
      detail = `body:${m.kind}`;
      break;
    }
    case "body-shape":
      body = JSON.stringify(
        sample(
          r,
          fc
            .oneof(
              fc.jsonValue({ maxDepth: 3 }),
              fc.array(fc.anything({ maxDepth: 2 })).map(() => []),
            )
            .filter((v) => v === null || typeof v !== "object" || Array.isArray(v)),
        ),
      );
      break;
    case "malformed-json":
      body = pick(r, [
        (body ?? "").slice(0, Math.floor(r() * (body ?? "").length)),
        "{",
        "{'a':1}",
        "[1,",
        "\u0000",
        `${body ?? ""}}`,
        "NaN",
      ]);
      break;
    case "content-type":
      headers["Content-Type"] = pick(r, [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "jsonx",
      ]);
      break;
    case "path-param": {
      const names = op.params.filter((p) => p.in === "path").map((p) => p.name);
      const name = pick(r, names);
      const crafted = r() < 0.6 ? pick(r, CRAFTED_IDS) : sample(r, fc.string({ unit: "binary", minLength: 1, maxLength: 60 }));
      url = base + op.path.replace(/\{(\w+)\}/g, (_, n: string) => segment(n === name ? crafted : (params[n] ?? "x")));
      detail = `path-param:${name}`;
      if (UNSAFE.has(op.method) && op.body) break;
      // Without a body to break, an unsafe request with a crafted id must still change nothing (404/400).
      break;
    }
    case "query": {
      const q = pick(
        r,
        op.params.filter((p) => p.in === "query"),
      );
      const m = pick(r, mutations(q.schema, q.schema.enum?.[0] ?? q.schema.minimum ?? "x"));
      const v = m.make(r);
      if (v === undefined || v === DELETE) return null;
      url += `?${q.name}=${segment(typeof v === "string" ? v : JSON.stringify(v))}`;
      detail = `query:${q.name}:${m.kind}`;
      if (!UNSAFE.has(op.method)) break;
      break;
    }
    case "auth": {
      const bad = pick(r, ["none", "garbage", "basic", "alg-none", "expired", "truncated", "empty-bearer"]);
      detail = `auth:${bad}`;
      if (bad === "none") delete headers.Authorization;
      else if (bad === "garbage")
        headers.Authorization = `Bearer ${sample(r, fc.stringMatching(/^[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{0,40}$/))}`;
      else if (bad === "basic") headers.Authorization = "Basic ZnV6ejpmdXp6";
      else if (bad === "alg-none") {
        const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
        headers.Authorization = `Bearer ${b64({ alg: "none", typ: "JWT" })}.${b64({ sub: "fuzz-admin", role: "admin", exp: Math.floor(Date.now() / 1000) + 600 })}.`;
      } else if (bad === "expired" && fx.expired) headers.Authorization = `Bearer ${fx.expired}`;
      else if (bad === "truncated") headers.Authorization = `Bearer ${goodToken.slice(0, -5)}`;
      else headers.Authorization = "Bearer ";
      break;
    }
    case "role": {
      const others = Object.keys(fx.tokens).filter((x) => !op.roles.includes(x));
      const other = pick(r, others);
      headers.Authorization = `Bearer ${fx.tokens[other]}`;
      detail = `role:${other}`;
      break;
    }
  }
  // A request whose only fault is a crafted id in a body-less unsafe call still names another resource;
  // an unsafe body-less call with the owner's token and the fixture's real id would be valid: never sent.
  if (UNSAFE.has(op.method) && !op.body && kind !== "path-param" && kind !== "auth" && kind !== "role") return null;
  return { op: key, kind: detail, method: op.method, url, headers, body };
}

// ───────────────────────────── state through the API ─────────────────────────────

async function snapshot(base: string, fx: Fixtures): Promise<Record<string, unknown>> {
  const get = async (p: string, token?: string) => {
    const res = await fetch(base + p, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    return { status: res.status, body: res.headers.get("Content-Type")?.includes("json") ? await res.json() : await res.text() };
  };
  const list = (await get("/v1/events")) as { body: { events?: { id: string; name: string }[] } };
  return {
    events: (list.body.events ?? []).map((e) => `${e.id}:${e.name}`).sort(),
    event: await get(`/v1/events/${fx.eventId}`),
    availability: await get(`/v1/events/${fx.eventId}/availability`),
    seats: await get(`/v1/events/${fx.eventId}/sections/a/seats`),
    hold: await get(`/v1/holds/${encodeURIComponent(fx.holdId)}`, fx.tokens.buyer),
    order: await get(`/v1/orders/${encodeURIComponent(fx.orderId)}`, fx.tokens.buyer),
    orders: await get("/v1/orders", fx.tokens.buyer),
    otherOrders: await get("/v1/orders", fx.otherBuyer),
    webhook: await get("/v1/organizers/me/webhook", fx.tokens.organizer),
    deadLetters: await get("/v1/admin/dead-letters", fx.tokens.admin),
    reconciliation: await get("/v1/admin/reconciliation", fx.tokens.admin),
  };
}

/** Fields that move with time, not with writes (availability's snapshot time, ids of answers). */
function stable(v: unknown): unknown {
  return JSON.parse(
    JSON.stringify(v, (k, x) => (["at", "asOf", "updatedAt", "generatedAt", "requestId", "expiresInSeconds"].includes(k) ? undefined : x)),
  );
}

// ───────────────────────────── the run ─────────────────────────────

/** Fuzzes the instance at `base` with `requests` cases. */
export async function fuzz(
  base: string,
  opts: { requests?: number; seed?: number; concurrency?: number; jwtSecret?: string } = {},
): Promise<FuzzReport> {
  const started = Date.now();
  const total = opts.requests ?? 5_000;
  const r = rng(opts.seed ?? 1);
  const doc = await json<{ paths: Record<string, Record<string, Record<string, unknown>>> }>(
    await fetch(`${base}/openapi.json`),
    "openapi",
  );
  const ops = operations(doc).filter((o) => o.path !== "/openapi.json" && o.path !== "/docs");
  const fx = await setUp(base, opts.jwtSecret);
  // Availability is published about once a second: let it settle before the first look.
  await new Promise((res) => setTimeout(res, 2_500));
  const before = await snapshot(base, fx);

  const report: FuzzReport = {
    requests: 0,
    histogram: {},
    byKind: {},
    serverErrors: [],
    nonProblem: [],
    acceptedUnsafe: [],
    transportErrors: [],
    stateChanged: [],
    seconds: 0,
  };
  // Operations with a body have the most to break: they come up five times as often.
  const weighted = ops.flatMap((o) => (o.body ? [o, o, o, o, o] : [o]));
  const cases: FuzzCase[] = [];
  for (let i = 0; cases.length < total && i < total * 20; i++) {
    const c = buildCase(r, base, weighted[i % weighted.length] as Operation, fx);
    if (c) cases.push(c);
  }
  let next = 0;
  const worker = async () => {
    while (next < cases.length) {
      const c = cases[next++] as FuzzCase;
      report.byKind[c.kind.split(":")[0] as string] = (report.byKind[c.kind.split(":")[0] as string] ?? 0) + 1;
      let res: Response;
      try {
        res = await fetch(c.url, { method: c.method, headers: c.headers, body: c.body });
      } catch (err) {
        report.transportErrors.push({ case: c, error: String(err) });
        continue;
      }
      report.requests++;
      report.histogram[res.status] = (report.histogram[res.status] ?? 0) + 1;
      const text = await res.text();
      const contentType = res.headers.get("Content-Type") ?? "";
      if (res.status >= 500) report.serverErrors.push({ case: c, status: res.status, body: text.slice(0, 300) });
      if (res.status >= 400) {
        let ok = contentType.startsWith("application/problem+json");
        if (ok) {
          try {
            const p = JSON.parse(text) as { status?: number; code?: string; requestId?: string };
            ok = p.status === res.status && typeof p.code === "string" && typeof p.requestId === "string";
          } catch {
            ok = false;
          }
        }
        if (!ok) report.nonProblem.push({ case: c, status: res.status, contentType, body: text.slice(0, 300) });
      } else if (UNSAFE.has(c.method)) report.acceptedUnsafe.push({ case: c, status: res.status, body: text.slice(0, 300) });
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 8 }, worker));

  await new Promise((res) => setTimeout(res, 2_500));
  const after = await snapshot(base, fx);
  for (const what of Object.keys(before)) {
    const b = stable(before[what]);
    const a = stable(after[what]);
    if (JSON.stringify(a) !== JSON.stringify(b)) report.stateChanged.push({ what, before: b, after: a });
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

/** True when the run found nothing. */
export const clean = (r: FuzzReport): boolean =>
  r.serverErrors.length === 0 &&
  r.nonProblem.length === 0 &&
  r.acceptedUnsafe.length === 0 &&
  r.transportErrors.length === 0 &&
  r.stateChanged.length === 0;

const isMain = process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename);
if (isMain) {
  const requests = Number(process.env.FUZZ_REQUESTS ?? 5_000);
  const seed = Number(process.env.FUZZ_SEED ?? 1);
  const concurrency = Number(process.env.FUZZ_CONCURRENCY ?? 8);
  let url = process.env.FUZZ_URL;
  let jwtSecret = process.env.FUZZ_JWT_SECRET;
  let stop: (() => Promise<void>) | undefined;
  let stateDir: string | undefined;
  if (!url) {
    const { startServer } = await import("./serve.ts");
    const { freePort, testServerVars } = await import("../test/e2e/helpers.ts");
    stateDir = mkdtempSync(path.join(os.tmpdir(), "bw-fuzz-"));
    const vars = testServerVars({ RATE_LIMITS: "off" });
    jwtSecret = vars.JWT_SECRET;
    const server = await startServer({ port: await freePort(), stateDir, cron: false, log: false, vars });
    url = server.url;
    stop = server.stop;
    console.log(`fuzzing a fresh instance at ${url} (rate limits off)`);
  }
  try {
    const report = await fuzz(url, { requests, seed, concurrency, jwtSecret });
    console.log(
      JSON.stringify(
        {
          requests: report.requests,
          seconds: report.seconds,
          histogram: report.histogram,
          byKind: report.byKind,
          serverErrors: report.serverErrors.length,
          nonProblem: report.nonProblem.length,
          acceptedUnsafe: report.acceptedUnsafe.length,
          transportErrors: report.transportErrors.length,
          stateChanged: report.stateChanged.map((s) => s.what),
        },
        null,
        2,
      ),
    );
    for (const f of [...report.serverErrors, ...report.nonProblem, ...report.acceptedUnsafe, ...report.transportErrors].slice(0, 20))
      console.log(JSON.stringify(f));
    for (const s of report.stateChanged) console.log(JSON.stringify(s).slice(0, 2_000));
    process.exitCode = clean(report) ? 0 : 1;
  } finally {
    await stop?.();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  }
}

import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { sign } from "hono/utils/jwt/jwt";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { LimitLedger } from "../../durable-objects/limit-ledger";
import { ROLES, type Role } from "../../lib/auth";
import { limitStub } from "../../lib/holds";
import { resetBreakers, resetSandbox, sandboxLedger } from "../../lib/payments";
import { b64url } from "../../lib/signing";
import { app } from "../../workers/app";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";
import { expectInventoryInvariants } from "../inventory-helpers";
import { eventually } from "../queues/helpers";

/**
 * The security cases every route shares (as Unkey's `runCommonRouteTests`), run for every operation of the
 * served OpenAPI document, so a new route is covered the moment it is documented:
 * - a protected route (`security` with `bearer`) answers 401 `unauthorized` with `WWW-Authenticate` to no
 *   token, a garbled one, an expired one and a forged one (signed with another secret, or `alg: none`),
 *   and 403 `forbidden` to a valid token of each role it does not allow (`x-roles`, workers/openapi.ts);
 *   a token of an allowed role gets past auth;
 * - a buyer's route on an owner-scoped resource (holds, orders, tickets: in the path, or named in the
 *   body) answers another buyer 404 `not_found`, and a buyer's reads never show another buyer's ids;
 * - none of these attempts changes anything (the owner's hold, order, reservations, the event row, the
 *   inventory counts, the charges);
 * - a public route answers without a token.
 * A protected route the suite cannot build a request for fails the suite, unless {@link SPECIAL} says why.
 */

interface OpenApiOperation {
  security?: Record<string, string[]>[];
  "x-roles"?: string[];
  requestBody?: { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> };
  responses?: Record<string, unknown>;
}
interface OpenApiDocument {
  security?: Record<string, string[]>[];
  paths: Record<string, Record<string, OpenApiOperation>>;
}

const METHODS = new Set(["get", "put", "post", "patch", "delete"]);

/** One documented operation, as the suite sees it. */
interface Operation {
  /** `get /v1/holds/{id}` */
  name: string;
  method: string;
  /** OpenAPI path template. */
  path: string;
  protected: boolean;
  /** Roles that may call it; `"any"` for any signed-in user; undefined when the document does not say. */
  roles: Role[] | "any" | undefined;
  hasBody: boolean;
  bodyProperties: string[];
  documentedStatuses: string[];
}

const served = await call("/openapi.json");
if (served.status !== 200) throw new Error(`GET /openapi.json answered ${served.status}`);
const document = (await served.json()) as OpenApiDocument;

function rolesOf(op: OpenApiOperation, security: Record<string, string[]>[]): Operation["roles"] {
  const declared = op["x-roles"] ?? security.flatMap((s) => s.bearer ?? []);
  if (declared.length === 0) return undefined;
  if (declared.includes("any")) return "any";
  const unknown = declared.filter((r) => !(ROLES as readonly string[]).includes(r));
  if (unknown.length) throw new Error(`unknown roles in /openapi.json: ${unknown.join(", ")}`);
  return declared as Role[];
}

const operations: Operation[] = Object.entries(document.paths).flatMap(([path, ops]) =>
  Object.entries(ops)
    .filter(([method]) => METHODS.has(method))
    .map(([method, op]) => {
      const security = op.security ?? document.security ?? [];
      const isProtected = security.some((s) => "bearer" in s);
      const schema = op.requestBody?.content?.["application/json"]?.schema;
      return {
        name: `${method} ${path}`,
        method,
        path,
        protected: isProtected,
        roles: isProtected ? rolesOf(op, security) : undefined,
        hasBody: op.requestBody !== undefined,
        bodyProperties: Object.keys(schema?.properties ?? {}),
        documentedStatuses: Object.keys(op.responses ?? {}),
      };
    }),
);

/** The test fixtures: one of each resource, all of buyer A and organizer A. */
interface Fixtures {
  event: EventBody;
  /** An active hold of buyer A. */
  holdId: string;
  /** A paid order of buyer A (from another hold). */
  orderId: string;
  ticketId: string;
  /** Buyer A's token. */
  buyerA: string;
}

const BUYER_A = "route-security-buyer-a";

/** Where a path parameter's value comes from, by the path segment before it. */
const PARAMETERS: Record<string, (f: Fixtures) => string> = {
  events: (f) => f.event.id,
  sections: () => "a",
  holds: (f) => f.holdId,
  orders: (f) => f.orderId,
  tickets: (f) => f.ticketId,
  reconciliation: (f) => f.event.id,
};
/** Path segments whose resources belong to one buyer: another buyer must get 404 for them. */
const OWNED = new Set(["holds", "orders", "tickets"]);
/** Body fields that name an owned resource, and a body that is valid but for whose resource it names. */
const OWNED_BODY_FIELDS = new Set(["holdId", "orderId", "ticketId"]);
const OWNED_BODIES: Record<string, (f: Fixtures) => unknown> = {
  "post /v1/orders": (f) => ({ holdId: f.holdId, payment: { method: "sandbox", token: "tok_ok" } }),
};

/**
 * Routes that need what the suite cannot do generically, each with the reason. `skip` names the cases left
 * out; every other case still runs for the route.
 */
const SPECIAL: Record<string, { skip?: "allowed role"[]; env?: Partial<Env>; why: string }> = {
  // The fault API exists only where FAULT_INJECTION is on (404 otherwise, before auth): probe it switched on.
  "get /v1/admin/faults": { env: { FAULT_INJECTION: "true" }, why: "exists only with FAULT_INJECTION on" },
  "put /v1/admin/faults": {
    env: { FAULT_INJECTION: "true" },
    skip: ["allowed role"],
    why: "exists only with FAULT_INJECTION on; the allowed call opens a fault window",
  },
  // An admin with an empty body replays every dead letter of every queue: a real action, not a probe.
  "post /v1/admin/dead-letters/replay": { skip: ["allowed role"], why: "the allowed call replays all dead letters" },
  // An admin's call reconciles the event's inventory against the order shards and may repair it.
  "post /v1/admin/reconciliation/{id}": { skip: ["allowed role"], why: "the allowed call repairs inventory" },
};

/** The path parameters of a template, each with the segment before it. */
const parametersOf = (path: string) =>
  [...path.matchAll(/([^/]+)\/\{([^}]+)\}/g)].map((m) => ({ segment: m[1] as string, name: m[2] as string }));

/** Why the suite cannot exercise a protected operation, or undefined when it can. */
function cannotExercise(op: Operation): string | undefined {
  if (op.roles === undefined) return "no roles in the document (x-roles or bearer scopes)";
  const unknown = parametersOf(op.path).filter((p) => !(p.segment in PARAMETERS));
  if (unknown.length) return `no fixture for path parameter(s) ${unknown.map((p) => `${p.segment}/{${p.name}}`).join(", ")}`;
  if (admitsBuyer(op) && op.bodyProperties.some((p) => OWNED_BODY_FIELDS.has(p)) && !(op.name in OWNED_BODIES))
    return `its body names an owned resource (${op.bodyProperties.filter((p) => OWNED_BODY_FIELDS.has(p)).join(", ")}) and OWNED_BODIES has no valid body for it`;
  return undefined;
}

const admitsBuyer = (op: Operation) => op.roles === "any" || (Array.isArray(op.roles) && op.roles.includes("buyer"));
const ownedInPath = (op: Operation) => parametersOf(op.path).some((p) => OWNED.has(p.segment));
const ownedInBody = (op: Operation) => op.name in OWNED_BODIES;

const protectedOps = operations.filter((op) => op.protected);
const exercisable = protectedOps.filter((op) => cannotExercise(op) === undefined);
const publicOps = operations.filter((op) => !op.protected);

/** The operation's URL with the fixtures' ids (a placeholder for a parameter of a public route the suite does not know). */
const urlOf = (op: Operation, f: Fixtures) =>
  op.path.replace(
    /([^/]+)\/\{([^}]+)\}/g,
    (_, segment: string) => `${segment}/${encodeURIComponent(PARAMETERS[segment]?.(f) ?? "unknown")}`,
  );

/** The bindings of operations in {@link SPECIAL} that need their own, one object each (configuration is parsed per object). */
const specialEnvs = new Map(Object.entries(SPECIAL).flatMap(([name, s]) => (s.env ? [[name, { ...env, ...s.env }] as const] : [])));

/** Sends `op` with `authorization` (none when undefined) and, for operations with a body, `body` ({} by default). */
async function request(op: Operation, f: Fixtures, authorization: string | undefined, body: unknown = {}): Promise<Response> {
  const headers = new Headers();
  if (authorization !== undefined) headers.set("Authorization", authorization);
  const method = op.method.toUpperCase();
  const ownEnv = specialEnvs.get(op.name);
  if (!ownEnv) return call(urlOf(op, f), { method, headers, ...(op.hasBody ? { json: body } : {}) });
  // The Hono app itself, with this operation's bindings.
  if (op.hasBody) headers.set("Content-Type", "application/json");
  const ctx = createExecutionContext();
  const req = new Request(`https://breakwater.test${urlOf(op, f)}`, {
    method,
    headers,
    ...(op.hasBody ? { body: JSON.stringify(body) } : {}),
  });
  const res = await app.fetch(req, ownEnv, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);
const json64 = (v: unknown) => b64url(new TextEncoder().encode(JSON.stringify(v)));

/** Tokens that must not get in, each carrying a role the operation allows (so only the flaw refuses it). */
async function badTokens(role: Role): Promise<[string, string][]> {
  const claims = { sub: "route-security-intruder", role, exp: nowSeconds() + 600 };
  return [
    ["garbled", "Bearer eyJub3QiOiJqc29uIg.eyJzdWIiOjF9.c2ln"],
    ["not a JWT", "Bearer let-me-in"],
    ["another scheme", `Basic ${btoa("admin:admin")}`],
    ["expired", `Bearer ${await sign({ ...claims, exp: nowSeconds() - 60 }, env.JWT_SECRET, "HS256")}`],
    ["signed with another secret", `Bearer ${await sign(claims, "not-the-secret-0123456789abcdef", "HS256")}`],
    ["alg none", `Bearer ${json64({ alg: "none", typ: "JWT" })}.${json64(claims)}.`],
  ];
}

/** What must not change when a request is refused. */
async function stateOf(f: Fixtures) {
  const asOwner = async (path: string) => {
    const res = await call(path, { token: f.buyerA });
    return { status: res.status, body: (await res.json()) as unknown };
  };
  const ledger = limitStub(env.LIMIT_LEDGER, f.event, BUYER_A);
  return {
    hold: await asOwner(`/v1/holds/${f.holdId}`),
    order: await asOwner(`/v1/orders/${f.orderId}`),
    event: await env.CATALOG_DB.prepare("SELECT * FROM events WHERE id = ?").bind(f.event.id).first(),
    inventory: await expectInventoryInvariants(f.event),
    reservations: await runInDurableObject(ledger, (_: LimitLedger, state) =>
      state.storage.sql.exec("SELECT * FROM reservations ORDER BY hold_id").toArray(),
    ),
    charges: sandboxLedger().length,
  };
}

async function expectProblem(res: Response, status: number, code: string, what: string): Promise<Problem> {
  expect(res.status, what).toBe(status);
  expect(res.headers.get("Content-Type"), what).toBe("application/problem+json");
  const problem = (await res.json()) as Problem;
  expect(problem.code, what).toBe(code);
  return problem;
}

const tokens = new Map<string, string>();
/** A valid token of `role` for `sub`, made once. */
async function tokenOf(sub: string, role: Role): Promise<string> {
  const key = `${sub}:${role}`;
  let t = tokens.get(key);
  if (!t) {
    t = await tokenFor(sub, role);
    tokens.set(key, t);
  }
  return t;
}

let f: Fixtures;
beforeAll(async () => {
  resetSandbox();
  const event = await createEvent(await tokenOf("route-security-organizer-a", "organizer"), { perCustomerLimit: 10 });
  const buyerA = await tokenOf(BUYER_A, "buyer");
  const hold = async (body: unknown) => {
    const res = await call(`/v1/events/${event.id}/holds`, { method: "POST", token: buyerA, json: body });
    if (res.status !== 201) throw new Error(`hold failed: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { hold: { id: string } }).hold.id;
  };
  const holdId = await hold({ sectionId: "floor", quantity: 1 });
  const paidHold = await hold({ sectionId: "a", seats: ["1-1"] });
  const paid = await call("/v1/orders", {
    method: "POST",
    token: buyerA,
    json: { holdId: paidHold, payment: { method: "sandbox", token: "tok_ok" } },
  });
  if (paid.status !== 201) throw new Error(`order failed: ${paid.status} ${await paid.text()}`);
  const { order } = (await paid.json()) as { order: { id: string; tickets: { id: string }[] } };
  f = { event, holdId, orderId: order.id, ticketId: order.tickets[0]?.id ?? "", buyerA };
  // The Inventory DO tells buyer A's LimitLedger of the sale with its next alarm (about a second later):
  // the fixtures are still until then, or a test's before/after snapshot would straddle that settlement.
  const ledger = limitStub(env.LIMIT_LEDGER, event, BUYER_A);
  await eventually(async () =>
    (
      await runInDurableObject(ledger, (_: LimitLedger, state) =>
        state.storage.sql.exec<{ state: string }>("SELECT state FROM reservations WHERE hold_id = ?", paidHold).toArray(),
      )
    ).some((r) => r.state === "sold"),
  );
});
beforeEach(() => resetBreakers());

describe("the route list from /openapi.json", () => {
  it("holds the protected routes known today, with their roles", () => {
    const byName = new Map(protectedOps.map((op) => [op.name, op.roles]));
    expect(byName.get("get /v1/holds/{id}")).toEqual(["buyer"]);
    expect(byName.get("delete /v1/holds/{id}")).toEqual(["buyer"]);
    expect(byName.get("post /v1/orders")).toEqual(["buyer"]);
    expect(byName.get("get /v1/orders/{id}")).toEqual(["buyer"]);
    expect(byName.get("post /v1/events")).toEqual(["organizer", "admin"]);
    expect(byName.get("get /metrics")).toEqual(["admin"]);
    expect(byName.get("get /v1/tickets/{id}")).toEqual(["buyer"]);
    expect(byName.get("get /v1/tickets/{id}/qr.svg")).toEqual(["buyer"]);
    expect(byName.get("post /v1/events/{id}/check-ins")).toEqual(["organizer", "admin"]);
    expect(byName.get("get /v1/events/{id}/check-ins.csv")).toEqual(["organizer", "admin"]);
    expect(protectedOps.length).toBeGreaterThanOrEqual(16);
    expect(exercisable.filter((op) => ownedInPath(op) && admitsBuyer(op)).length).toBeGreaterThanOrEqual(3);
  });

  it("can exercise every protected route", () => {
    const stuck = protectedOps.flatMap((op) => {
      const why = cannotExercise(op);
      return why ? [`${op.name}: ${why}`] : [];
    });
    // Extend PARAMETERS / OWNED_BODIES (or SPECIAL, with a reason) for each route listed here.
    expect(stuck).toEqual([]);
  });

  it("names no route in SPECIAL that the document does not list", () => {
    const names = new Set(operations.map((op) => op.name));
    expect(Object.keys(SPECIAL).filter((n) => !names.has(n))).toEqual([]);
  });

  it("documents 401 for every protected route, and 403 where roles are restricted", () => {
    for (const op of protectedOps) {
      expect(op.documentedStatuses, op.name).toContain("401");
      if (Array.isArray(op.roles)) expect(op.documentedStatuses, op.name).toContain("403");
    }
  });
});

for (const op of exercisable) {
  const roles = op.roles as Role[] | "any";
  const allowed: Role[] = roles === "any" ? [...ROLES] : roles;
  const refused = ROLES.filter((r) => !allowed.includes(r));
  const special = SPECIAL[op.name];

  describe(`${op.method.toUpperCase()} ${op.path} (${roles === "any" ? "any role" : roles.join(" or ")})`, () => {
    it("answers 401 unauthorized with a Bearer challenge to a missing, garbled, expired or forged token, changing nothing", async () => {
      const before = await stateOf(f);
      for (const [what, authorization] of [["no token", undefined], ...(await badTokens(allowed[0] as Role))] as const) {
        const res = await request(op, f, authorization);
        await expectProblem(res, 401, "unauthorized", `${op.name} with ${what}`);
        expect(res.headers.get("WWW-Authenticate"), `${op.name} with ${what}`).toBe("Bearer");
      }
      expect(await stateOf(f)).toEqual(before);
    });

    if (refused.length)
      it(`answers 403 forbidden to a token of each other role (${refused.join(", ")}), changing nothing`, async () => {
        const before = await stateOf(f);
        for (const role of refused) {
          const res = await request(op, f, `Bearer ${await tokenOf(`route-security-${role}-b`, role)}`);
          await expectProblem(res, 403, "forbidden", `${op.name} as ${role}`);
        }
        expect(await stateOf(f)).toEqual(before);
      });

    if (!special?.skip?.includes("allowed role"))
      it(`lets a token of each allowed role (${allowed.join(", ")}) past auth`, async () => {
        const roleRefusal = refused.length
          ? ((await (
              await request(op, f, `Bearer ${await tokenOf(`route-security-${refused[0]}-b`, refused[0] as Role)}`)
            ).json()) as Problem)
          : undefined;
        for (const role of allowed) {
          const res = await request(op, f, `Bearer ${await tokenOf(`route-security-${role}-b`, role)}`);
          expect(res.status, `${op.name} as ${role}`).not.toBe(401);
          // Another 403 may follow (an organizer changing another's event), but not the role check's.
          if (res.status === 403) expect(((await res.json()) as Problem).detail, `${op.name} as ${role}`).not.toBe(roleRefusal?.detail);
        }
      });

    if (admitsBuyer(op) && (ownedInPath(op) || ownedInBody(op)))
      it("answers another buyer 404 not_found for buyer A's resource, changing nothing", async () => {
        const before = await stateOf(f);
        const body = OWNED_BODIES[op.name]?.(f) ?? {};
        const res = await request(op, f, `Bearer ${await tokenOf("route-security-buyer-b", "buyer")}`, body);
        await expectProblem(res, 404, "not_found", `${op.name} as buyer B`);
        expect(await stateOf(f)).toEqual(before);
      });

    if (admitsBuyer(op) && op.method === "get")
      it("never shows another buyer buyer A's holds, orders or tickets", async () => {
        const res = await request(op, f, `Bearer ${await tokenOf("route-security-buyer-b", "buyer")}`);
        const text = await res.text();
        const asked = urlOf(op, f);
        for (const id of [f.holdId, f.orderId, f.ticketId])
          if (!asked.includes(id)) expect(text, `${op.name} as buyer B`).not.toContain(id);
      });
  });
}

describe("public routes", () => {
  for (const op of publicOps)
    it(`${op.method.toUpperCase()} ${op.path} answers without a token`, async () => {
      const res = await request(op, f, undefined);
      expect(res.status, op.name).not.toBe(401);
      expect(res.status, op.name).not.toBe(403);
    });
});

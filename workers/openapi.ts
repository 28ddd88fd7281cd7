import { z } from "zod";
import type { Role } from "../lib/auth";
import { codeToStatus } from "../lib/problem";

/**
 * The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. Each route file
 * registers its routes with {@link describeRoute} next to the handler; `/openapi.json` renders them.
 */

interface HeaderDoc {
  name: string;
  required?: boolean;
  description: string;
}

export interface RouteDoc {
  /** Unique name of the operation (client generators name their methods after it). */
  operationId: string;
  method: "get" | "post" | "put" | "patch" | "delete";
  /** Hono path, e.g. `/v1/events/:id`. */
  path: string;
  summary: string;
  tags: string[];
  /** Roles allowed; empty array = any signed-in user; undefined = public. */
  auth?: Role[];
  body?: z.ZodType;
  /** Path parameters' schema (an object keyed by the `:names` of the path). */
  params?: z.ZodType;
  query?: z.ZodType;
  headers?: HeaderDoc[];
  /** `mediaType`: a response that is not JSON (an SVG, a CSV), documented as a string of that type. */
  responses: Record<number, { description: string; schema?: z.ZodType; headers?: string[]; mediaType?: string }>;
  /** Problem codes this route may answer with. */
  errors?: (keyof typeof codeToStatus)[];
}

const routes: RouteDoc[] = [];

/** Registers a route in the document. Call once per route at module load. */
export function describeRoute(doc: RouteDoc): void {
  if (routes.some((r) => r.operationId === doc.operationId)) throw new Error(`operationId ${doc.operationId} is used twice`);
  routes.push(doc);
}

/** The problem document schema (RFC 9457 with our `code` and `requestId`). */
const problemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  code: z.enum(Object.keys(codeToStatus) as [keyof typeof codeToStatus, ...(keyof typeof codeToStatus)[]]),
  requestId: z.string(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  ticketId: z.string().optional().describe("already_checked_in, ticket_void: the ticket the scanned code is for"),
  checkedInAt: z.string().optional().describe("already_checked_in: when the ticket was first checked in (ISO 8601)"),
  voidedAt: z.string().optional().describe("ticket_void: when the ticket was refunded (ISO 8601)"),
});

const jsonSchema = (schema: z.ZodType, io: "input" | "output") =>
  z.toJSONSchema(schema, { io, unrepresentable: "any", target: "draft-2020-12" }) as Record<string, unknown>;

const pathParams = (path: string) => [...path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] as string);

/** Builds the OpenAPI 3.1 document from the registered routes. */
export function buildOpenApi(serverUrl: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const oaPath = r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
    const ps = r.params ? (jsonSchema(r.params, "input") as { properties?: Record<string, unknown> }).properties : undefined;
    const parameters: unknown[] = pathParams(r.path).map((name) => ({
      name,
      in: "path",
      required: true,
      schema: ps?.[name] ?? { type: "string" },
    }));
    for (const h of r.headers ?? [])
      parameters.push({ name: h.name, in: "header", required: !!h.required, description: h.description, schema: { type: "string" } });
    if (r.query) {
      const qs = jsonSchema(r.query, "input") as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, schema] of Object.entries(qs.properties ?? {}))
        parameters.push({ name, in: "query", required: qs.required?.includes(name) ?? false, schema });
    }
    const responses: Record<string, unknown> = {};
    for (const [status, resp] of Object.entries(r.responses)) {
      responses[status] = {
        description: resp.description,
        ...(resp.schema ? { content: { "application/json": { schema: jsonSchema(resp.schema, "output") } } } : {}),
        ...(resp.mediaType ? { content: { [resp.mediaType]: { schema: { type: "string" } } } } : {}),
      };
    }
    const errorStatuses = new Map<number, string[]>();
    // Answers every route of its kind can give: a bad path id, query or body is 400; a body route also
    // refuses other media types (415) and oversize bodies (413); a route with auth answers 401.
    for (const code of new Set<keyof typeof codeToStatus>([
      ...(r.errors ?? []),
      ...(r.body || r.query || pathParams(r.path).length ? (["validation_failed"] as const) : []),
      ...(r.body ? (["unsupported_media_type", "payload_too_large"] as const) : []),
      ...(r.auth ? (["unauthorized"] as const) : []),
    ])) {
      const status = codeToStatus[code];
      errorStatuses.set(status, [...(errorStatuses.get(status) ?? []), code]);
    }
    if (r.auth?.length) errorStatuses.set(403, [...(errorStatuses.get(403) ?? []), "forbidden"]);
    for (const [status, codes] of errorStatuses)
      responses[String(status)] ??= {
        description: `Problem: ${[...new Set(codes)].join(", ")}`,
        content: { "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } } },
      };
    paths[oaPath] ??= {};
    (paths[oaPath] as Record<string, unknown>)[r.method] = {
      operationId: r.operationId,
      summary: r.summary,
      tags: r.tags,
      ...(r.auth ? { security: [{ bearer: [] }], "x-roles": r.auth.length ? r.auth : ["any"] } : { security: [] }),
      ...(parameters.length ? { parameters } : {}),
      ...(r.body ? { requestBody: { required: true, content: { "application/json": { schema: jsonSchema(r.body, "input") } } } } : {}),
      responses,
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Breakwater API",
      version: "1.0.0",
      description: "Flash-sale ticketing. Errors are RFC 9457 problem documents with a stable `code`.",
    },
    servers: [{ url: serverUrl }],
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
      schemas: { Problem: jsonSchema(problemSchema, "output") },
    },
    paths,
  };
}

/** Registered routes (tests compare them with the app's router). */
export const registeredRoutes = (): readonly RouteDoc[] => routes;

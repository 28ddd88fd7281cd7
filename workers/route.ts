import type { Context, Hono, MiddlewareHandler } from "hono";
import type { z } from "zod";
import type { Role } from "../lib/auth";
import type { RateLimitedRoute } from "../lib/rate-limit";
import { auth } from "./middleware/auth";
import { idempotency } from "./middleware/idempotency";
import { rateLimit } from "./middleware/rate-limit";
import { validate } from "./middleware/validate";
import { describeRoute, type RouteDoc } from "./openapi";
import type { AppEnv } from "./types";

/**
 * One declaration per route: method, path, who may call it, its limits, the schemas of what it accepts and
 * answers, and its handler. {@link route} builds the middleware chain from the declaration and registers the
 * same declaration in the OpenAPI document, so the document cannot say one thing and the chain do another
 * (a role, a schema, an idempotent route).
 */

type Schema = z.ZodType | undefined;
type Out<S extends Schema> = S extends z.ZodType ? z.output<S> : undefined;

/** What a route declares. */
export interface RouteSpec<P extends Schema, Q extends Schema, H extends Schema, B extends Schema>
  extends Omit<RouteDoc, "auth" | "body" | "query"> {
  /** Roles allowed (`[]`: any signed-in user); absent: public. */
  auth?: Role[];
  /**
   * A request this says carries another credential skips the token check (the handler must verify that
   * credential itself), e.g. the signed link of a ticket's QR code in a mail.
   */
  authUnless?: (c: Context<AppEnv>) => boolean;
  /** The rate-limit group (`lib/rate-limit.ts` policies). */
  rateLimit?: RateLimitedRoute;
  /** Accepts `Idempotency-Key` (docs/api.md). */
  idempotent?: boolean;
  /** Middleware after auth, limits and idempotency, before validation (e.g. a feature switch). */
  before?: MiddlewareHandler<AppEnv>[];
  params?: P;
  query?: Q;
  /** Schema of request headers to validate (document them in `headers`). */
  headerSchema?: H;
  body?: B;
}

/** The validated inputs a handler receives. */
export interface RouteInput<P extends Schema, Q extends Schema, H extends Schema, B extends Schema> {
  param: Out<P>;
  query: Out<Q>;
  header: Out<H>;
  json: Out<B>;
}

const idempotencyHeader = { name: "Idempotency-Key", description: "≤ 255 chars; replays the first response" };

/** Declares a route on `app`: its middleware chain and its OpenAPI operation, from one spec. */
export function route<
  P extends Schema = undefined,
  Q extends Schema = undefined,
  H extends Schema = undefined,
  B extends Schema = undefined,
>(
  app: Hono<AppEnv>,
  spec: RouteSpec<P, Q, H, B>,
  handler: (c: Context<AppEnv>, input: RouteInput<P, Q, H, B>) => Response | Promise<Response>,
): void {
  const { rateLimit: limit, idempotent, before, params, headerSchema, authUnless, ...doc } = spec;
  describeRoute({
    ...doc,
    headers: [...(idempotent ? [idempotencyHeader] : []), ...(doc.headers ?? [])],
    errors: [
      ...(doc.errors ?? []),
      ...(limit ? (["rate_limited"] as const) : []),
      ...(idempotent ? (["idempotency_conflict", "idempotency_mismatch"] as const) : []),
    ],
    ...(params ? { params } : {}),
  });
  const chain: MiddlewareHandler<AppEnv>[] = [];
  if (spec.auth) {
    const check = auth(...spec.auth);
    chain.push(authUnless ? (c, next) => (authUnless(c) ? next() : check(c, next)) : check);
  }
  if (limit) chain.push(rateLimit({ route: limit }));
  if (idempotent) chain.push(idempotency());
  chain.push(...(before ?? []));
  // Typed as plain objects here: the handler gets the schemas' own types through RouteInput.
  const check = (target: "param" | "query" | "header" | "json", schema: z.ZodType) =>
    chain.push(validate(target, schema as z.ZodType<Record<string, unknown>>));
  if (params) check("param", params);
  if (spec.query) check("query", spec.query);
  if (headerSchema) check("header", headerSchema);
  if (spec.body) check("json", spec.body);
  // The validators above ran with these very schemas, so what they stored has these types.
  const valid = (c: Context<AppEnv>, target: "param" | "query" | "header" | "json", schema: Schema) =>
    schema ? (c.req.valid(target as never) as unknown) : undefined;
  const end: MiddlewareHandler<AppEnv> = async (c) =>
    handler(c, {
      param: valid(c, "param", params) as Out<P>,
      query: valid(c, "query", spec.query) as Out<Q>,
      header: valid(c, "header", headerSchema) as Out<H>,
      json: valid(c, "json", spec.body) as Out<B>,
    });
  // Hono's `on` is typed per number of handlers; the chain's length varies, so it is passed as one.
  app.on(spec.method.toUpperCase(), spec.path, ...([...chain, end] as [MiddlewareHandler<AppEnv>]));
}

import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Hono, type MiddlewareHandler } from "hono";
import type { Principal } from "../../lib/auth";
import { notFound, onError } from "../../workers/middleware/error-handler";
import type { AppEnv } from "../../workers/types";

/**
 * A tiny Hono app for testing one middleware at a time: the app's own `onError` and `notFound`, and
 * nothing else. Tests add the middleware under test and a handler that records what it saw.
 */
export function tinyApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.onError(onError);
  app.notFound(notFound(() => app.routes));
  return app;
}

/** Options of {@link send}. */
export interface SendInit extends RequestInit {
  /** Bindings that replace the test environment's (e.g. `{ MAX_BODY_BYTES: "10" }`). */
  env?: Partial<Env>;
  /** `https://x` by default; `http://x` for a plain-http request. */
  origin?: string;
}

/** Sends one request to `app` with the test bindings, and waits for its `waitUntil` work. */
export async function send(app: Hono<AppEnv>, path: string, init: SendInit = {}): Promise<Response> {
  const { env: over, origin, ...request } = init;
  const ctx = createExecutionContext();
  const res = await app.fetch(new Request(`${origin ?? "https://x"}${path}`, request), { ...env, ...over }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** Stands in for `auth()`: signs in the buyer named by the `X-User` header (nobody without it). */
export const userFromHeader: MiddlewareHandler<AppEnv> = async (c, next) => {
  const sub = c.req.header("X-User");
  if (sub) c.set("principal", { sub, role: "buyer" } satisfies Principal);
  await next();
};

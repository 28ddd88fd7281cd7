import { createMiddleware } from "hono/factory";
import { config } from "../../lib/config";
import { ApiError } from "../../lib/problem";
import type { AppEnv } from "../types";

/** A route that exists only while DEV_AUTH is on (local runs): 404, as for no route, otherwise. */
export const devOnly = createMiddleware<AppEnv>(async (c, next) => {
  if (!config(c.env).DEV_AUTH) throw new ApiError("not_found", `No route for ${c.req.method} ${c.req.path}.`);
  await next();
});

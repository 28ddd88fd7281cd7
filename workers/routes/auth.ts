import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { z } from "zod";
import { issueToken, ROLES } from "../../lib/auth";
import { config } from "../../lib/config";
import { ApiError } from "../../lib/problem";
import { route } from "../route";
import type { AppEnv } from "../types";

const devTokenInput = z.strictObject({
  sub: z.string().regex(/^[A-Za-z0-9._:@-]{1,128}$/, "1-128 characters: letters, digits, . _ : @ -"),
  role: z.enum(ROLES),
});

/** `POST /v1/auth/dev-token`: only when DEV_AUTH is on (local runs); otherwise the route does not exist. */
export const devAuth = new Hono<AppEnv>();

/** The route exists only while DEV_AUTH is on. */
const devAuthOn = createMiddleware<AppEnv>(async (c, next) => {
  if (!config(c.env).DEV_AUTH) throw new ApiError("not_found", `No route for ${c.req.method} ${c.req.path}.`);
  await next();
});

route(
  devAuth,
  {
    operationId: "createDevToken",
    method: "post",
    path: "/v1/auth/dev-token",
    summary: "Issue a token for any user and role (DEV_AUTH only; 404 otherwise)",
    tags: ["auth"],
    before: [devAuthOn],
    body: devTokenInput,
    responses: { 200: { description: "A one-hour HS256 token", schema: z.object({ token: z.string() }) } },
    errors: ["not_found"],
  },
  async (c, { json }) => c.json({ token: await issueToken(json, c.env.JWT_SECRET) }),
);

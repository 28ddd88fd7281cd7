import { Hono } from "hono";
import { z } from "zod";
import { issueToken, ROLES } from "../../lib/auth";
import { config } from "../../lib/config";
import { ApiError } from "../../lib/problem";
import { validate } from "../middleware/validate";
import { describeRoute } from "../openapi";
import type { AppEnv } from "../types";

const devTokenInput = z.strictObject({
  sub: z.string().regex(/^[A-Za-z0-9._:@-]{1,128}$/, "1-128 characters: letters, digits, . _ : @ -"),
  role: z.enum(ROLES),
});

/** `POST /v1/auth/dev-token`: only when DEV_AUTH is on (local runs); otherwise the route does not exist. */
export const devAuth = new Hono<AppEnv>();

describeRoute({
  operationId: "createDevToken",
  method: "post",
  path: "/v1/auth/dev-token",
  summary: "Issue a token for any user and role (DEV_AUTH only; 404 otherwise)",
  tags: ["auth"],
  body: devTokenInput,
  responses: { 200: { description: "A one-hour HS256 token", schema: z.object({ token: z.string() }) } },
  errors: ["not_found"],
});
devAuth.post(
  "/v1/auth/dev-token",
  async (c, next) => {
    if (!config(c.env).DEV_AUTH) throw new ApiError("not_found", `No route for ${c.req.method} ${c.req.path}.`);
    await next();
  },
  validate("json", devTokenInput),
  async (c) => c.json({ token: await issueToken(c.req.valid("json"), c.env.JWT_SECRET) }),
);

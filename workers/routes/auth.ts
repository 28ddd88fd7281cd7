import { Hono } from "hono";
import { z } from "zod";
import { issueToken, ROLES } from "../../lib/auth";
import { devOnly } from "../middleware/dev-only";
import { route } from "../route";
import type { AppEnv } from "../types";

const devTokenInput = z.strictObject({
  sub: z.string().regex(/^[A-Za-z0-9._:@-]{1,128}$/, "1-128 characters: letters, digits, . _ : @ -"),
  role: z.enum(ROLES),
});

/** `POST /v1/auth/dev-token`: only when DEV_AUTH is on (local runs); otherwise the route does not exist. */
export const devAuth = new Hono<AppEnv>();

route(
  devAuth,
  {
    operationId: "createDevToken",
    method: "post",
    path: "/v1/auth/dev-token",
    summary: "Issue a token for any user and role (DEV_AUTH only; 404 otherwise)",
    tags: ["auth"],
    before: [devOnly],
    body: devTokenInput,
    responses: { 200: { description: "A one-hour HS256 token", schema: z.object({ token: z.string() }) } },
    errors: ["not_found"],
  },
  async (c, { json }) => c.json({ token: await issueToken(json, c.env.JWT_SECRET) }),
);

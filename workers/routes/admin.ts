import { Hono } from "hono";
import { z } from "zod";
import { listDeadLetters, QUEUES, replayDeadLetters } from "../../queues/dead-letters";
import { route } from "../route";
import type { AppEnv } from "../types";

const queueName = z.enum(Object.keys(QUEUES) as [keyof typeof QUEUES, ...(keyof typeof QUEUES)[]]);
const listQuery = z.strictObject({
  queue: queueName.optional(),
  status: z.enum(["dead", "replayed"]).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
const replayInput = z
  .strictObject({ ids: z.array(z.string().min(1).max(300)).min(1).max(1000).optional(), queue: queueName.optional() })
  .refine((v) => v.ids || v.queue, { message: "name ids or a queue" });

const deadLetterSchema = z.object({
  id: z.string(),
  queue: z.string(),
  body: z.unknown(),
  attempts: z.number().int(),
  firstFailedAt: z.string(),
  lastError: z.string().nullable(),
  status: z.enum(["dead", "replayed"]),
  replayedAt: z.string().nullable(),
});

/** Operations for admins: dead letters. */
export const admin = new Hono<AppEnv>();

route(
  admin,
  {
    operationId: "listDeadLetters",
    method: "get",
    path: "/v1/admin/dead-letters",
    summary: "Messages that exhausted their retries (admin)",
    tags: ["operations"],
    auth: ["admin"],
    query: listQuery,
    responses: { 200: { description: "Dead letters, newest first", schema: z.object({ deadLetters: z.array(deadLetterSchema) }) } },
  },
  async (c, { query }) => {
    const rows = await listDeadLetters(c.env.CATALOG_DB, { ...query });
    return c.json({ deadLetters: rows }, 200, { "Cache-Control": "no-store" });
  },
);

route(
  admin,
  {
    operationId: "replayDeadLetters",
    method: "post",
    path: "/v1/admin/dead-letters/replay",
    summary: "Send dead letters back to their queue (admin); consumers are idempotent",
    tags: ["operations"],
    auth: ["admin"],
    body: replayInput,
    responses: { 200: { description: "Replayed ids", schema: z.object({ replayed: z.array(z.string()) }) } },
  },
  async (c, { json }) => c.json({ replayed: await replayDeadLetters(c.env, json) }),
);

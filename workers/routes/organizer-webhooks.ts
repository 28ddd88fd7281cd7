import { Hono } from "hono";
import { z } from "zod";
import { findOrganizerWebhook, ORGANIZER_EVENT_TYPES, organizerWebhookInput, saveOrganizerWebhook } from "../../lib/organizer-webhooks";
import { ApiError } from "../../lib/problem";
import { principalOf } from "../http";
import { route } from "../route";
import type { AppEnv } from "../types";

/** Each organizer's own webhook endpoint. */
export const organizerWebhooks = new Hono<AppEnv>();

const settingsSchema = z.object({ url: z.string(), events: z.array(z.enum(ORGANIZER_EVENT_TYPES)) });

route(
  organizerWebhooks,
  {
    operationId: "setOrganizerWebhook",
    method: "put",
    path: "/v1/organizers/me/webhook",
    summary:
      "Set your webhook endpoint (organizer). Answers a new signing secret, shown only here; each delivery carries Breakwater-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + '.' + body)> and is retried through QStash. Setting it again replaces it and rotates the secret.",
    tags: ["organizers"],
    auth: ["organizer"],
    body: organizerWebhookInput,
    responses: {
      200: {
        description: "Saved",
        schema: settingsSchema.extend({ secret: z.string().describe("whsec_…: verify deliveries with it; never shown again") }),
      },
    },
  },
  async (c, { json }) => {
    const hook = await saveOrganizerWebhook(c.env.CATALOG_KV, principalOf(c).sub, json);
    return c.json({ url: hook.url, events: hook.events, secret: hook.secret }, 200, { "Cache-Control": "no-store" });
  },
);

route(
  organizerWebhooks,
  {
    operationId: "getOrganizerWebhook",
    method: "get",
    path: "/v1/organizers/me/webhook",
    summary: "Your webhook endpoint and event types (organizer); the secret is not shown again",
    tags: ["organizers"],
    auth: ["organizer"],
    responses: { 200: { description: "The endpoint", schema: settingsSchema } },
    errors: ["not_found"],
  },
  async (c) => {
    const hook = await findOrganizerWebhook(c.env.CATALOG_KV, principalOf(c).sub);
    if (!hook) throw new ApiError("not_found", "No webhook endpoint is set; PUT one.");
    return c.json({ url: hook.url, events: hook.events }, 200, { "Cache-Control": "private, no-store" });
  },
);

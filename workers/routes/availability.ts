import { Hono } from "hono";
import { z } from "zod";
import { readAvailability } from "../../lib/availability";
import { getEventDoc } from "../../lib/catalog";
import { EVENT_ID } from "../../lib/ids";
import { ApiError } from "../../lib/problem";
import { readContext, SNAPSHOT_CACHE, sendCached } from "../http";
import { route } from "../route";
import type { AppEnv } from "../types";

const sectionAvailability = z.object({
  id: z.string(),
  available: z.number().int(),
  held: z.number().int(),
  sold: z.number().int(),
  capacity: z.number().int(),
});

/** GET /v1/events/:id/availability: snapshots published by the Inventory DOs, never computed per request. */
export const availability = new Hono<AppEnv>();

route(
  availability,
  {
    operationId: "getAvailability",
    method: "get",
    path: "/v1/events/:id/availability",
    summary: "Places available, held and sold per section (lags the truth by about a second)",
    tags: ["catalog"],
    params: z.object({ id: z.string().regex(EVENT_ID, "not an event id") }),
    headers: [{ name: "If-None-Match", description: "ETag of a copy you hold; 304 when unchanged" }],
    responses: {
      200: { description: "Snapshot", schema: z.object({ eventId: z.string(), asOf: z.string(), sections: z.array(sectionAvailability) }) },
      304: { description: "Not modified" },
    },
    errors: ["not_found"],
  },
  async (c, { param: { id } }) => {
    const rc = readContext(c);
    const event = await getEventDoc(rc, id);
    if (!event) throw new ApiError("not_found", `No event ${id}.`);
    const read = await readAvailability({ rooms: c.env.WAITING_ROOM, waitUntil: rc.waitUntil }, event);
    if (!read.value) throw new Error("availability snapshot could not be built");
    return sendCached(c, { value: read.value, layer: read.layer }, SNAPSHOT_CACHE);
  },
);

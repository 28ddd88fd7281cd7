import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { z } from "zod";
import { FAULT_NAMES, faultInjectionEnabled, openFaults, setFault } from "../../lib/faults";
import { objectSandboxLedger } from "../../lib/payments";
import { ApiError } from "../../lib/problem";
import { route } from "../route";
import type { AppEnv } from "../types";

const faultWindowSchema = z.object({ until: z.string(), delayMs: z.number().int().optional() });
const faultsSchema = z.object({ faults: z.partialRecord(z.enum(FAULT_NAMES), faultWindowSchema) });
const faultInput = z.strictObject({
  name: z.enum(FAULT_NAMES),
  seconds: z.number().min(0).max(600).describe("How long the window stays open from now; 0 closes it"),
  delayMs: z
    .number()
    .int()
    .min(1)
    .max(5_000)
    .optional()
    .describe(
      "inventory_slow: the stall per Inventory DO call (default 25); shard_slow: the time each shard write takes, one at a time per shard (default 50)",
    ),
});

const chargeSchema = z.object({
  idempotencyKey: z.string(),
  chargeId: z.string(),
  amount: z.number().int(),
  currency: z.string(),
  status: z.enum(["succeeded", "refunded"]),
  chargedAt: z.string().optional(),
  refundedAt: z.string().optional(),
});

/** 404 unless FAULT_INJECTION is on: in a default deployment the fault routes do nothing (after auth: 401/403 as for every admin route). */
const faultsEnabled = createMiddleware<AppEnv>(async function faultsEnabled(c, next) {
  if (!faultInjectionEnabled(c.env)) throw new ApiError("not_found", "Not found.");
  await next();
});

const faultView = () =>
  Object.fromEntries(Object.entries(openFaults()).map(([name, w]) => [name, { ...w, until: new Date(w.until).toISOString() }]));

/**
 * Rehearsing a sale (`npm run drop`): fault windows, only where FAULT_INJECTION is on, and the sandbox
 * payment provider's durable charge ledger (admin), which the drop's checker compares with the orders.
 */
export const rehearsal = new Hono<AppEnv>();

route(
  rehearsal,
  {
    operationId: "listFaults",
    method: "get",
    path: "/v1/admin/faults",
    summary: "Open fault windows (admin; only where FAULT_INJECTION is on, else 404)",
    tags: ["operations"],
    auth: ["admin"],
    before: [faultsEnabled],
    responses: { 200: { description: "Open windows by name", schema: faultsSchema } },
    errors: ["not_found"],
  },
  (c) => c.json({ faults: faultView() }, 200, { "Cache-Control": "no-store" }),
);

route(
  rehearsal,
  {
    operationId: "setFault",
    method: "put",
    path: "/v1/admin/faults",
    summary:
      "Open, move or close one fault window (admin; only where FAULT_INJECTION is on, else 404). payments: the sandbox " +
      "provider fails like an outage; shard_writes: order-shard writes fail; shard_slow: each order-shard write takes delayMs more, " +
      "one at a time per shard; inventory_slow: each Inventory DO call stalls the object for delayMs. The window lives in the isolate's memory " +
      "(a restart closes it).",
    tags: ["operations"],
    auth: ["admin"],
    before: [faultsEnabled],
    body: faultInput,
    responses: { 200: { description: "Open windows by name", schema: faultsSchema } },
    errors: ["not_found", "validation_failed"],
  },
  (c, { json: { name, seconds, delayMs } }) => {
    setFault(name, {
      until: Date.now() + seconds * 1000,
      ...(name === "inventory_slow" ? { delayMs: delayMs ?? 25 } : name === "shard_slow" ? { delayMs: delayMs ?? 50 } : {}),
    });
    return c.json({ faults: faultView() }, 200, { "Cache-Control": "no-store" });
  },
);

route(
  rehearsal,
  {
    operationId: "listSandboxCharges",
    method: "get",
    path: "/v1/admin/payments/sandbox/charges",
    summary: "Every charge the sandbox payment provider made, from its durable ledger, with refunds (admin)",
    tags: ["operations"],
    auth: ["admin"],
    responses: { 200: { description: "Charges", schema: z.object({ charges: z.array(chargeSchema) }) } },
  },
  async (c) => c.json({ charges: await objectSandboxLedger(c.env.SANDBOX_LEDGER).list() }, 200, { "Cache-Control": "no-store" }),
);

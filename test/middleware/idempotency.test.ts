import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { resetBreakers, resetSandbox, sandboxLedger } from "../../lib/payments";
import { call, createEvent, type EventBody, type Problem, tokenFor } from "../helpers";

let ev: EventBody;
beforeAll(async () => {
  ev = await createEvent(await tokenFor("org-idem", "organizer"), { perCustomerLimit: 10 });
});
beforeEach(() => {
  resetSandbox();
  resetBreakers();
});

async function holdFor(token: string): Promise<string> {
  const res = await call(`/v1/events/${ev.id}/holds`, { method: "POST", token, json: { sectionId: "floor", quantity: 1 } });
  expect(res.status).toBe(201);
  return ((await res.json()) as { hold: { id: string } }).hold.id;
}
const pay = (token: string, holdId: string, tok: string, key: string) =>
  call("/v1/orders", {
    method: "POST",
    token,
    json: { holdId, payment: { method: "sandbox", token: tok } },
    headers: { "Idempotency-Key": key },
  });

describe("Idempotency-Key after a 5xx", () => {
  it("keeps the key's fingerprint: another body under it is 422, the same body may run again", async () => {
    const t = await tokenFor("idem-5xx", "buyer");
    const holdId = await holdFor(t);
    const failed = await pay(t, holdId, "tok_error", "k-5xx");
    expect(failed.status).toBe(503);
    expect(((await failed.json()) as Problem).code).toBe("overloaded");

    const other = await pay(t, holdId, "tok_ok", "k-5xx");
    expect(other.status).toBe(422);
    expect(((await other.json()) as Problem).code).toBe("idempotency_mismatch");
    expect(sandboxLedger()).toEqual([]);

    // The same request is not replayed (a 5xx is not stored) and not refused as in flight: it runs again.
    const again = await pay(t, holdId, "tok_error", "k-5xx");
    expect(again.status).toBe(503);
    expect(again.headers.get("Idempotency-Replayed")).toBeNull();
    expect(((await again.json()) as Problem).code).toBe("overloaded");

    // A new key takes the corrected request.
    const fixed = await pay(t, holdId, "tok_ok", "k-5xx-2");
    expect(fixed.status).toBe(201);
    expect(sandboxLedger().filter((c) => c.status === "succeeded")).toHaveLength(1);
  });
});

describe("replayed answers", () => {
  it("repeat the first answer's Location, status and body (orders and holds)", async () => {
    const t = await tokenFor("idem-loc", "buyer");
    const holdRes = () =>
      call(`/v1/events/${ev.id}/holds`, {
        method: "POST",
        token: t,
        json: { sectionId: "a", seats: ["1-3"] },
        headers: { "Idempotency-Key": "h-loc" },
      });
    const firstHold = await holdRes();
    expect(firstHold.status).toBe(201);
    const holdBody = await firstHold.text();
    const holdId = (JSON.parse(holdBody) as { hold: { id: string } }).hold.id;
    expect(firstHold.headers.get("Location")).toBe(`/v1/holds/${holdId}`);
    const replayHold = await holdRes();
    expect(replayHold.status).toBe(201);
    expect(replayHold.headers.get("Idempotency-Replayed")).toBe("true");
    expect(replayHold.headers.get("Location")).toBe(`/v1/holds/${holdId}`);
    expect(await replayHold.text()).toBe(holdBody);

    const first = await pay(t, holdId, "tok_ok", "o-loc");
    expect(first.status).toBe(201);
    const location = first.headers.get("Location");
    expect(location).toMatch(/^\/v1\/orders\/ord_/);
    const body = await first.text();
    const replay = await pay(t, holdId, "tok_ok", "o-loc");
    expect(replay.status).toBe(201);
    expect(replay.headers.get("Idempotency-Replayed")).toBe("true");
    expect(replay.headers.get("Location")).toBe(location);
    expect(replay.headers.get("Content-Type")).toBe(first.headers.get("Content-Type"));
    expect(await replay.text()).toBe(body);
    expect(sandboxLedger()).toHaveLength(1);
  });
});

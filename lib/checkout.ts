import { orderIdForHold, parseLocatedId } from "./hold-id";
import { doCallError, type HoldDeps, holdLocation, type InventoryStub, inventoryStub, locationOf } from "./holds";
import type { HoldView } from "./inventory-types";
import { log } from "./log";
import { metric } from "./metric-catalog";
import {
  type Order,
  type OrderMessage,
  orderMessage,
  type PendingOrder,
  paidOrderOf,
  type RefundRecord,
  type StoredOrder,
  type Ticket,
} from "./order";
import {
  type ChargeAmount,
  type ChargeOutcome,
  chargeWithPolicy,
  DEFAULT_PAYMENT_POLICY,
  type PaymentPolicy,
  type PaymentProvider,
} from "./payments";
import { ApiError, type Outcome, unwrap } from "./problem";

/**
 * Checkout (DESIGN.md "Checkout"): lock the hold, charge with the order id as idempotency key, record the
 * sold order durably in the Inventory DO, answer, and leave the rest to the queues.
 *
 * No charge without tickets (invariant 2): a charge whose order cannot be recorded is voided; a charge
 * whose outcome is unknown (timeout, outage) is voided too; a void that fails is recorded in the DO and
 * retried by its alarm; and a checkout whose edge died is resolved by the DO after CHECKOUT_TIMEOUT_MS.
 *
 * The buyer's LimitLedger follows the hold through the Inventory DO, which settles it on every change
 * (checkout, reopen, sale, release, expiry), so an edge that dies mid-checkout cannot leave it behind.
 */

/** What checkout needs besides the DOs. */
export interface CheckoutDeps extends HoldDeps {
  provider: PaymentProvider;
  policy?: PaymentPolicy;
  /** Makes the signed tickets of an order. */
  issueTickets: (order: { orderId: string; eventId: string; sectionId: string; seats: string[]; quantity: number }) => Promise<Ticket[]>;
  /**
   * Comparison mode only (with {@link awaitHandOff}): writes the order to its shard before the answer.
   * Otherwise the Inventory DO that records an order hands it to the orders queue itself.
   */
  enqueueOrder?: (message: OrderMessage) => Promise<void>;
  /**
   * Wait for the hand-off (`enqueueOrder`) before answering instead of leaving it to the Inventory DO
   * (comparison mode, where `enqueueOrder` writes the shard itself: the order then leaves the DO's outbox at once).
   */
  awaitHandOff?: boolean;
  /** W3C traceparent of the request, carried into the order message. */
  traceparent?: string;
}

/** POST /v1/orders input. */
export interface CheckoutInput {
  holdId: string;
  payment: { method: string; token: string };
}

/** Runs a DO call, mapping transport failures to 503. */
async function doCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    doCallError(err, what);
  }
}

/**
 * Checks out a hold of `userId`. Returns the order and whether it was created now (false: replayed).
 * Steps: lock the hold ({@link beginOrReplay}), charge ({@link chargeOrReopen}), then act on the payment's
 * outcome ({@link settleCharge}): record the paid order, or reopen / void and answer the failure.
 */
export async function checkout(
  deps: CheckoutDeps,
  userId: string,
  input: CheckoutInput,
): Promise<{ order: Order | PendingOrder; created: boolean }> {
  const inv = inventoryStub(deps.inventory, holdLocation(input.holdId));
  const begun = await beginOrReplay(inv, input.holdId, userId, deps.provider.name);
  if ("replayed" in begun) return { order: begun.replayed, created: false };
  const outcome = await chargeOrReopen(deps, inv, input, begun);
  return { order: await settleCharge(deps, inv, userId, input.holdId, begun, outcome), created: true };
}

/** A hold locked for checkout, with the payment key of this attempt. */
interface Begun {
  hold: HoldView;
  paymentKey: string;
}

/** Locks the hold for checkout; a hold already sold answers its stored order instead (a replay). */
async function beginOrReplay(inv: InventoryStub, holdId: string, userId: string, provider: string): Promise<Begun | { replayed: Order }> {
  const begun = unwrap(
    await doCall<Outcome<{ hold: HoldView; paymentKey: string }>>("inventory", () => inv.beginCheckout(holdId, userId, provider)),
  );
  if (begun.hold.status !== "sold") return begun;
  const stored = unwrap(await doCall<Outcome<StoredOrder>>("inventory", () => inv.getOrder(orderIdForHold(holdId), userId)));
  return { replayed: stored.body };
}

/** Charges the hold's total under this attempt's key; if the charge could not even start, reopens the hold and rethrows. */
async function chargeOrReopen(deps: CheckoutDeps, inv: InventoryStub, input: CheckoutInput, begun: Begun): Promise<ChargeOutcome> {
  try {
    return await chargeWithPolicy(
      deps.provider,
      { idempotencyKey: begun.paymentKey, amount: begun.hold.total, currency: begun.hold.currency, token: input.payment.token },
      deps.policy ?? DEFAULT_PAYMENT_POLICY,
    );
  } catch (err) {
    // Breaker open (nothing was charged) or a programming error: reopen the hold and surface it.
    await reopen(inv, input.holdId);
    throw err;
  }
}

/**
 * Acts on a payment's outcome: paid → the order recorded (or, if it cannot be, the charge voided and a
 * 503, or 409 `event_cancelled` when the event was cancelled meanwhile); pending → the pending order (its webhook settles it); declined → the hold reopened and a 402;
 * unknown → the attempt voided, the hold reopened once that is settled or recorded, and a 503.
 */
async function settleCharge(
  deps: CheckoutDeps,
  inv: InventoryStub,
  userId: string,
  holdId: string,
  { hold, paymentKey: payKey }: Begun,
  outcome: ChargeOutcome,
): Promise<Order | PendingOrder> {
  const charge = { amount: hold.total, currency: hold.currency };
  if (outcome.status === "declined") {
    await reopen(inv, holdId);
    metric.checkouts.inc({ result: "declined" });
    throw new ApiError("payment_declined", `The payment was declined (${outcome.reason}). The hold is still yours; try another card.`);
  }
  if (outcome.status === "unknown") {
    // The provider may have charged: void this attempt's key. Reopen the hold only once the refund is
    // settled or durably recorded; otherwise the hold stays in checkout and the DO resolves it.
    if (await voidOrRecord(deps, inv, holdId, payKey, "payment outcome unknown", charge)) await reopen(inv, holdId);
    metric.checkouts.inc({ result: "provider_unavailable" });
    throw new ApiError("overloaded", "The payment provider is unavailable; you were not charged. Please retry.", { retryAfterSeconds: 5 });
  }
  if (outcome.status === "pending") {
    // The provider settles it later (its webhook): the hold stays locked in checkout until then.
    metric.checkouts.inc({ result: "pending" });
    return pendingView(holdId, hold);
  }
  const stored = await recordPaidOrder(deps, inv, { holdId, userId, hold, payKey, chargeId: outcome.chargeId });
  if (stored && stored !== "event_cancelled") {
    metric.checkouts.inc({ result: "paid" });
    return stored.body;
  }
  // Charged but the order could not be recorded: refund, then reopen the hold (the buyer may retry). If
  // the DO is unreachable the hold stays in checkout; the DO voids the charge itself and reopens the hold
  // when the checkout times out.
  if (await voidOrRecord(deps, inv, holdId, payKey, "order could not be recorded", charge))
    await reopen(inv, holdId).catch((err: unknown) =>
      log.error("reopen after refund failed; the DO's checkout timeout reopens", { holdId, error: String(err) }),
    );
  metric.checkouts.inc({ result: "refunded" });
  if (stored === "event_cancelled")
    throw new ApiError("event_cancelled", "The event was cancelled during your checkout; the charge was refunded.");
  throw new ApiError("overloaded", "The order could not be completed; the charge was refunded. Please retry.", { retryAfterSeconds: 2 });
}

/** The order of a checkout whose payment the provider has not settled yet (no tickets until it has). */
function pendingView(holdId: string, hold: HoldView): PendingOrder {
  const loc = holdLocation(holdId);
  return {
    id: orderIdForHold(holdId),
    status: "pending",
    eventId: loc.eventId,
    sectionId: loc.sectionId,
    holdId,
    seats: hold.seats,
    quantity: hold.quantity,
    total: hold.total,
    currency: hold.currency,
    tickets: [],
    createdAt: new Date().toISOString(),
  };
}

/** A payment the provider made for a checkout attempt. */
interface PaidAttempt {
  holdId: string;
  userId: string;
  hold: HoldView;
  payKey: string;
  chargeId: string;
}

/**
 * Issues the tickets, records the sold order in the Inventory DO (for exactly this payment attempt) and
 * hands it to the orders queue. Null when the order could not be recorded, `event_cancelled` when the event
 * was cancelled during the checkout (the caller refunds either way).
 */
async function recordPaidOrder(deps: CheckoutDeps, inv: InventoryStub, paid: PaidAttempt): Promise<StoredOrder | "event_cancelled" | null> {
  const { holdId, userId, hold } = paid;
  const loc = holdLocation(holdId);
  const orderId = orderIdForHold(holdId);
  const createdAt = new Date().toISOString();
  const tickets = await deps.issueTickets({
    orderId,
    eventId: loc.eventId,
    sectionId: loc.sectionId,
    seats: hold.seats,
    quantity: hold.quantity,
  });
  // Validated once, here: the DO stores it, the outbox re-sends it and sync mode stores it as is.
  const parsed = orderMessage.safeParse({
    v: 1,
    kind: "order.paid",
    orderId,
    userId,
    eventId: loc.eventId,
    sectionId: loc.sectionId,
    holdId,
    seats: hold.seats,
    quantity: hold.quantity,
    total: hold.total,
    currency: hold.currency,
    tickets,
    paidAt: createdAt,
    payment: { provider: deps.provider.name, chargeId: paid.chargeId },
    ...(deps.traceparent ? { traceparent: deps.traceparent } : {}),
  });
  if (!parsed.success) log.error("order message invalid; refunding", { orderId, issues: parsed.error.issues.slice(0, 5) });
  const message = parsed.success ? parsed.data : null;

  let completed: Outcome<StoredOrder | null> | undefined;
  const stored: StoredOrder | undefined = message
    ? { id: orderId, holdId, userId, body: paidOrderOf(message), message, createdAt: Date.now() }
    : undefined;
  for (let attempt = 0; message && attempt < 3 && !completed; attempt++) {
    try {
      // Write-behind: the DO hands the order to the orders queue itself, batched with the orders recorded
      // alongside (one sendBatch and one commit for them, no second call from here). It is sent the
      // message only and derives the same document from it.
      completed = await inv.completeCheckout(holdId, message, paid.payKey, !deps.awaitHandOff);
    } catch (err) {
      log.error("completeCheckout failed", { orderId, attempt, error: String(err) });
    }
  }
  if (completed && !completed.ok && completed.code === "event_cancelled") return "event_cancelled";
  if (!message || !stored || !completed?.ok) return null;
  if (deps.awaitHandOff && deps.enqueueOrder) await storeBeforeAnswer(deps.enqueueOrder, inv, message);
  // Null: recorded now, as sent; otherwise a retried call found the order recorded before.
  return completed.value ?? stored;
}

/**
 * Comparison mode: writes a recorded order to its shard (`enqueueOrder`) before the answer, then tells its
 * Inventory DO it is stored (it leaves the outbox). A failure leaves the order to the DO's outbox.
 */
async function storeBeforeAnswer(
  store: (message: OrderMessage) => Promise<void>,
  inv: InventoryStub,
  message: OrderMessage,
): Promise<void> {
  try {
    await store(message);
    await inv.confirmStored([message.orderId]);
  } catch (err) {
    // The DO's outbox re-sends it.
    metric.queueSendFailures.inc({ queue: "orders" });
    log.warn("order enqueue failed; outbox will retry", { orderId: message.orderId, error: String(err) });
  }
}

/** A payment outcome the provider reported after the fact (Stripe's webhook), for one checkout attempt. */
export interface SettledPayment {
  /** The checkout attempt's payment key (`<orderId>:<attempt>`), from the payment's metadata. */
  paymentKey: string;
  outcome: "succeeded" | "failed";
  /** The provider's id of the payment. */
  chargeId: string;
  amount: number;
  currency: string;
}

/**
 * Applies a payment outcome the provider settled later. A success completes the order when its checkout
 * attempt is still waiting for it; otherwise (the hold expired, was released or reopened, another attempt
 * paid, or the DO is already voiding it) it is refunded at once and recorded — no charge without tickets.
 * A failure reopens the hold of a waiting attempt. Idempotent: a repeat finds the order sold or the
 * refund recorded (the provider's refund is idempotent per attempt).
 */
export async function settlePayment(deps: CheckoutDeps, settled: SettledPayment, delivery: ProviderDelivery): Promise<SettleResult> {
  const orderId = settled.paymentKey.split(":")[0] ?? "";
  const loc = parseLocatedId("ord", orderId);
  if (!loc) return "ignored";
  const inv = inventoryStub(deps.inventory, loc);
  const seen = await doCall<"new" | "duplicate" | "replayed">("inventory", () =>
    inv.providerEventSeen(delivery.eventId, delivery.signature),
  );
  if (seen === "replayed") return "replayed";
  if (seen === "duplicate") return "duplicate";
  const result = await applySettlement(deps, inv, orderId, settled);
  await doCall("inventory", () => inv.recordProviderEvent(delivery.eventId, delivery.signature, result));
  return result;
}

/** One signed delivery of a provider event (its id, and the signature header it came with). */
export interface ProviderDelivery {
  eventId: string;
  signature: string;
}

/**
 * What a settlement did: `replayed` is the very same signed delivery again (refused); `duplicate` the
 * provider's retry of an event already handled (nothing to do).
 */
export type SettleResult = "paid" | "already_paid" | "refunded" | "reopened" | "ignored" | "duplicate" | "replayed";

async function applySettlement(deps: CheckoutDeps, inv: InventoryStub, orderId: string, settled: SettledPayment): Promise<SettleResult> {
  const holdId = orderId.replace(/^ord_/, "hld_");
  const target = await doCall<{ state: "awaiting" | "sold" | "gone"; userId?: string; hold?: HoldView }>("inventory", () =>
    inv.checkoutOf(holdId, settled.paymentKey),
  );
  if (settled.outcome === "failed") {
    if (target.state !== "awaiting" || !target.userId) return "ignored";
    await reopen(inv, holdId);
    return "reopened";
  }
  if (target.state === "sold") return "already_paid";
  if (target.state === "awaiting" && target.userId && target.hold) {
    const stored = await recordPaidOrder(deps, inv, {
      holdId,
      userId: target.userId,
      hold: target.hold,
      payKey: settled.paymentKey,
      chargeId: settled.chargeId,
    });
    if (stored && stored !== "event_cancelled") {
      metric.checkouts.inc({ result: "paid" });
      return "paid";
    }
  }
  const reason = "paid after its hold was gone";
  if (!(await voidOrRecord(deps, inv, holdId, settled.paymentKey, reason, settled)))
    throw new ApiError("overloaded", "The refund could not be recorded; retry the delivery.", { retryAfterSeconds: 5 });
  metric.checkouts.inc({ result: "refunded" });
  return "refunded";
}

/** Puts a hold back to active after a checkout that did not charge (the DO settles the buyer's ledger). */
async function reopen(inv: InventoryStub, holdId: string): Promise<void> {
  await doCall<Outcome<HoldView>>("inventory", () => inv.abortCheckout(holdId));
}

/**
 * Voids the charge made under `payKey` now; if that fails, records a pending refund the DO retries.
 * True when the refund is settled or durably recorded; false when neither could be done (the hold must
 * then stay in checkout, where the DO's checkout timeout voids the charge).
 */
async function voidOrRecord(
  deps: CheckoutDeps,
  inv: InventoryStub,
  holdId: string,
  payKey: string,
  reason: string,
  charge: ChargeAmount,
): Promise<boolean> {
  const base: Omit<RefundRecord, "attempts" | "status" | "chargeId"> = {
    idempotencyKey: payKey,
    holdId,
    provider: deps.provider.name,
    reason,
  };
  let record: Omit<RefundRecord, "attempts">;
  try {
    const r = await deps.provider.voidCharge(payKey, undefined, { amount: charge.amount, currency: charge.currency });
    record = { ...base, status: r.refunded ? "refunded" : "nothing_to_refund", chargeId: r.chargeId ?? null };
    if (r.refunded) metric.refunds.inc({ reason });
  } catch (err) {
    log.error("void failed; recording it for retry", { payKey, error: String(err) });
    record = { ...base, status: "pending", chargeId: null };
  }
  try {
    await inv.recordRefund(record);
    return true;
  } catch (err) {
    log.error("refund record failed; the DO's checkout timeout will void", { payKey, error: String(err) });
    return record.status !== "pending";
  }
}

/** A buyer's own order, read from the Inventory DO that recorded it (at once after checkout). */
export async function getOrder(deps: HoldDeps, orderId: string, userId: string): Promise<Order | PendingOrder> {
  const inv = inventoryStub(deps.inventory, locationOf("ord", orderId));
  const stored = await doCall<Outcome<StoredOrder>>("inventory", () => inv.getOrder(orderId, userId));
  if (!stored.ok) {
    // A card payment the provider has not settled yet: the hold is still in checkout.
    const holdId = orderId.replace(/^ord_/, "hld_");
    const hold = await doCall<Outcome<HoldView>>("inventory", () => inv.getHold(holdId, userId));
    if (hold.ok && hold.value.status === "checking_out") return pendingView(holdId, hold.value);
  }
  return unwrap(stored).body;
}

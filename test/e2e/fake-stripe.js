// A stand-in for https://js.stripe.com/v3/ in browser tests (no network here, so Stripe.js cannot load).
// It implements only what web/static/checkout.js uses: Stripe(publishableKey), elements().create("card"),
// element.mount(node) and element.on("change"), and stripe.createPaymentMethod({ type: "card", card }).
// The "Card Element" is one text input (Stripe's is an iframe); the number typed picks one of Stripe's test
// PaymentMethod ids, which the loopback Stripe stand-in (test/setup/stripe-standin.ts) understands.
// Calls are recorded in window.__fakeStripe for the test to read.
(() => {
  /** Stripe's test card numbers → the test PaymentMethods Stripe documents for them (and the stand-in's own). */
  const METHODS = {
    4242424242424242: "pm_card_visa",
    5555555555554444: "pm_card_mastercard",
    4000000000000002: "pm_card_chargeDeclined",
    4000000000009995: "pm_card_chargeDeclinedInsufficientFunds",
    4000002760003184: "pm_card_authenticationRequired",
    4000000000000077: "pm_standin_processing",
  };
  const record = { keys: [], mounted: 0, created: [] };
  window.__fakeStripe = record;

  function cardElement() {
    const handlers = [];
    let input = null;
    return {
      mount(target) {
        const node = typeof target === "string" ? document.querySelector(target) : target;
        input = document.createElement("input");
        input.id = "fake-card-number";
        input.setAttribute("aria-label", "Card number");
        input.autocomplete = "cc-number";
        input.inputMode = "numeric";
        // Drawn as Stripe's frame is: no box of its own inside the page's (CSSOM styles pass style-src 'self').
        Object.assign(input.style, { border: "0", width: "100%", padding: "0", minHeight: "0" });
        input.addEventListener("input", () => {
          const digits = input.value.replace(/\D/g, "");
          const error = digits.length > 0 && digits.length < 16 ? { message: "Your card number is incomplete." } : undefined;
          for (const h of handlers) h({ elementType: "card", empty: digits.length === 0, complete: digits.length === 16, error });
        });
        node.append(input);
        record.mounted++;
      },
      on(event, handler) {
        if (event === "change") handlers.push(handler);
      },
      number: () => (input ? input.value.replace(/\D/g, "") : ""),
    };
  }

  window.Stripe = (publishableKey) => {
    if (!/^pk_test_/.test(publishableKey)) throw new Error(`fake Stripe.js: not a test publishable key: ${publishableKey}`);
    record.keys.push(publishableKey);
    return {
      elements: () => ({
        create(type) {
          if (type !== "card") throw new Error(`fake Stripe.js: only the card element (asked for ${type})`);
          return cardElement();
        },
      }),
      async createPaymentMethod({ type, card }) {
        if (type !== "card" || !card) throw new Error("fake Stripe.js: createPaymentMethod needs { type: 'card', card }");
        const number = card.number();
        if (number.length < 16)
          return { error: { type: "validation_error", code: "incomplete_number", message: "Your card number is incomplete." } };
        const id = METHODS[number];
        if (!id) return { error: { type: "card_error", code: "invalid_number", message: "Your card number is invalid." } };
        record.created.push(id);
        return { paymentMethod: { id, object: "payment_method", type: "card" } };
      },
    };
  };
})();

import { durableSandbox, type PaymentProvider, sandboxProviderInstance } from "./payments";
import { stripeProvider, stripeSettings } from "./stripe";

/**
 * The provider of a payment method (API `payment.method`) or of a provider name recorded with a checkout
 * (`sandbox`, `stripe`): the sandbox always (with its durable ledger when `env` binds SANDBOX_LEDGER); cards through Stripe only when `STRIPE_SECRET_KEY` is set in
 * `env`. Null for an unknown method or one that is not configured.
 */
export function paymentProvider(method: string, env: object): PaymentProvider | null {
  if (method === "sandbox") {
    // With its ledger objects bound the sandbox keeps its charges durably (a restart still finds and voids them).
    const ledger = (env as { SANDBOX_LEDGER?: Env["SANDBOX_LEDGER"] }).SANDBOX_LEDGER;
    return ledger ? durableSandbox(ledger) : sandboxProviderInstance;
  }
  if (method === "card" || method === "stripe") {
    const s = stripeSettings(env);
    return s.secretKey ? stripeProvider({ secretKey: s.secretKey, apiUrl: s.apiUrl }) : null;
  }
  return null;
}

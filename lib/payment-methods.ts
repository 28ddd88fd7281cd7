import { durableSandbox, type PaymentProvider, sandboxProviderInstance } from "./payments";
import { stripeProvider, stripeSettings } from "./stripe";

/**
 * The provider of a payment method (API `payment.method`) or of a provider name recorded with a checkout
 * (`sandbox`, `stripe`): the sandbox always (with its durable ledger when `env` has CATALOG_KV); cards through Stripe only when `STRIPE_SECRET_KEY` is set in
 * `env`. Null for an unknown method or one that is not configured.
 */
export function paymentProvider(method: string, env: object): PaymentProvider | null {
  if (method === "sandbox") {
    // With the catalog KV at hand the sandbox keeps its charges durably (a restart still finds and voids them).
    const kv = (env as { CATALOG_KV?: KVNamespace }).CATALOG_KV;
    return kv ? durableSandbox(kv) : sandboxProviderInstance;
  }
  if (method === "card" || method === "stripe") {
    const s = stripeSettings(env);
    return s.secretKey ? stripeProvider({ secretKey: s.secretKey, apiUrl: s.apiUrl }) : null;
  }
  return null;
}

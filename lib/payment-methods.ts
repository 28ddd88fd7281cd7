import { type PaymentProvider, sandboxProviderInstance } from "./payments";
import { stripeProvider, stripeSettings } from "./stripe";

/**
 * The provider of a payment method (API `payment.method`) or of a provider name recorded with a checkout
 * (`sandbox`, `stripe`): the sandbox always; cards through Stripe only when `STRIPE_SECRET_KEY` is set in
 * `env`. Null for an unknown method or one that is not configured.
 */
export function paymentProvider(method: string, env: object): PaymentProvider | null {
  if (method === "sandbox") return sandboxProviderInstance;
  if (method === "card" || method === "stripe") {
    const s = stripeSettings(env);
    return s.secretKey ? stripeProvider({ secretKey: s.secretKey, apiUrl: s.apiUrl }) : null;
  }
  return null;
}

/** Payment methods this server knows, configured or not (for error messages). */
export const PAYMENT_METHODS = ["sandbox", "card"] as const;

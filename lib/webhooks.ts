import { Receiver } from "@upstash/qstash";

/**
 * The receiving side of organizer webhooks: QStash signs each delivery (`Upstash-Signature`, a JWT over the
 * body), and the organizer's endpoint verifies it with the current or next signing key before trusting it.
 */
export async function verifyWebhook(
  req: { signature: string | null; body: string; url?: string },
  keys: { current: string; next: string },
): Promise<boolean> {
  if (!req.signature) return false;
  const receiver = new Receiver({ currentSigningKey: keys.current, nextSigningKey: keys.next });
  try {
    return await receiver.verify({ signature: req.signature, body: req.body, ...(req.url ? { url: req.url } : {}) });
  } catch {
    return false;
  }
}

import { Client, Receiver } from "@upstash/qstash";

/**
 * Organizer webhooks go through QStash: the notifications consumer publishes each one to QStash, which
 * signs it (`Upstash-Signature`, a JWT over the body and the destination URL), delivers it with its own
 * retries, and drops repeats of the same deduplication id. The organizer's endpoint verifies the signature
 * with {@link verifyWebhook}.
 */

/** Publishes organizer webhooks. */
export interface WebhookPublisher {
  /**
   * Publishes `body` (an object is sent as JSON; a string is sent as is, JSON already serialized, e.g.
   * signed) to `url` with `headers` forwarded to it; a repeat of `deduplicationId` is delivered once.
   * Returns QStash's message id.
   */
  publish(url: string, body: Record<string, unknown> | string, deduplicationId: string, headers?: Record<string, string>): Promise<string>;
}

/** The QStash publisher; `baseUrl` (QSTASH_URL) points tests at a loopback stand-in. */
export function qstashPublisher(token: string, baseUrl?: string): WebhookPublisher {
  const client = new Client({ token, ...(baseUrl ? { baseUrl } : {}) });
  return {
    async publish(url, body, deduplicationId, headers = {}) {
      // QStash forwards every header not starting with Upstash- to the destination (as Upstash-Forward-*).
      const res = await client.publish({
        url,
        body: typeof body === "string" ? body : JSON.stringify(body),
        headers: { ...headers, "Content-Type": "application/json" },
        deduplicationId,
        retries: 3,
      });
      return "messageId" in res ? res.messageId : JSON.stringify(res);
    },
  };
}

/**
 * The receiving side: verifies a QStash delivery with the current or the next signing key
 * (QSTASH_CURRENT_SIGNING_KEY / QSTASH_NEXT_SIGNING_KEY, so keys rotate without downtime). False for a
 * missing, forged, expired or tampered signature, or one made for another URL when `url` is given.
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

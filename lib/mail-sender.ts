import { z } from "zod";
import { config } from "./config";

/**
 * Sending buyer mail: an HTTP e-mail API in production (Resend's `POST /emails` shape, with the mail id as
 * `Idempotency-Key` so a retried send is delivered once), and locally a catch-all mailbox that keeps every
 * mail for the developer page `/dev/mailbox` (DEV_AUTH only). Retries and the dead-letter path are the
 * notifications queue's: a send that may succeed later throws {@link MailUnavailableError} (retried with
 * backoff, then the DLQ); one the provider refuses throws {@link MailRejectedError} (dead-lettered at once).
 */

/** A rendered mail, ready to send. `id` is stable per occurrence (`order.confirmation:<orderId>`…). */
export interface OutgoingMail {
  id: string;
  to: string;
  subject: string;
  text: string;
  html: string;
}

/** Sends mail; idempotent by `mail.id`. */
export interface MailSender {
  readonly name: string;
  send(mail: OutgoingMail): Promise<void>;
}

/** The provider is unreachable or failing (5xx, 429, timeout): retry later. */
export class MailUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MailUnavailableError";
  }
}

/** The provider refused this mail (4xx): retrying cannot help. */
export class MailRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MailRejectedError";
  }
}

/** Mail settings (lib/config.ts; MAIL_API_KEY is an optional secret). */
function mailSettings(env: object): { apiKey: string | null; apiUrl: string; from: string } {
  const c = config(env);
  return { apiKey: c.MAIL_API_KEY ?? null, apiUrl: c.MAIL_API_URL, from: c.MAIL_FROM };
}

/** The HTTP e-mail API sender (Resend-compatible). `fetcher` is replaceable in tests. */
export function httpMailSender(opts: {
  apiUrl: string;
  apiKey: string;
  from: string;
  timeoutMs?: number;
  fetcher?: typeof fetch;
}): MailSender {
  const fetcher = opts.fetcher ?? fetch;
  const endpoint = `${opts.apiUrl.replace(/\/$/, "")}/emails`;
  return {
    name: "http",
    async send(mail) {
      let res: Response;
      try {
        res = await fetcher(endpoint, {
          method: "POST",
          headers: { Authorization: `Bearer ${opts.apiKey}`, "Content-Type": "application/json", "Idempotency-Key": mail.id },
          body: JSON.stringify({ from: opts.from, to: [mail.to], subject: mail.subject, text: mail.text, html: mail.html }),
          signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
        });
      } catch (err) {
        throw new MailUnavailableError(`mail API unreachable: ${String(err)}`);
      }
      if (res.ok) return;
      const detail = (await res.text().catch(() => "")).slice(0, 300);
      if (res.status >= 500 || res.status === 429 || res.status === 409)
        throw new MailUnavailableError(`mail API answered ${res.status}: ${detail}`);
      throw new MailRejectedError(`mail API refused ${mail.id} (${res.status}): ${detail}`);
    },
  };
}

/** A mail as the local mailbox keeps it. */
export const keptMailSchema = z.object({
  id: z.string(),
  to: z.string(),
  subject: z.string(),
  text: z.string(),
  html: z.string(),
  sentAt: z.string(),
});
export type KeptMail = z.output<typeof keptMailSchema>;

const MAILBOX_PREFIX = "dev-mailbox:";

/**
 * The local catch-all mailbox: every mail is kept in KV (`dev-mailbox:<id>`, two weeks) instead of being
 * sent, and `/dev/mailbox` shows them. For local runs and tests only (chosen when no MAIL_API_KEY is set
 * and DEV_AUTH is on).
 */
export function devMailbox(kv: KVNamespace): MailSender & { list(limit?: number): Promise<KeptMail[]> } {
  return {
    name: "dev-mailbox",
    async send(mail) {
      const kept: KeptMail = { ...mail, sentAt: new Date().toISOString() };
      await kv.put(`${MAILBOX_PREFIX}${mail.id}`, JSON.stringify(kept), { expirationTtl: 14 * 86_400 });
    },
    async list(limit = 100) {
      const keys = await kv.list({ prefix: MAILBOX_PREFIX, limit: 1000 });
      const mails = await Promise.all(keys.keys.map((k) => kv.get(k.name, "json")));
      return mails
        .flatMap((m) => {
          const parsed = keptMailSchema.safeParse(m);
          return parsed.success ? [parsed.data] : [];
        })
        .sort((a, b) => b.sentAt.localeCompare(a.sentAt))
        .slice(0, limit);
    },
  };
}

/**
 * The configured sender: the HTTP API when MAIL_API_KEY is set; otherwise the local mailbox when DEV_AUTH is
 * on; otherwise none (mail is not configured: the consumer logs and skips sending).
 */
export function mailSender(env: object & { CATALOG_KV: KVNamespace; DEV_AUTH?: string }, devAuth: boolean): MailSender | null {
  const s = mailSettings(env);
  if (s.apiKey) return httpMailSender({ apiUrl: s.apiUrl, apiKey: s.apiKey, from: s.from });
  return devAuth ? devMailbox(env.CATALOG_KV) : null;
}

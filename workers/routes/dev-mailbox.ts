import { Hono } from "hono";
import { z } from "zod";
import { devMailbox, keptMailSchema } from "../../lib/mail-sender";
import { esc } from "../../lib/mail-templates";
import { devOnly } from "../middleware/dev-only";
import { route } from "../route";
import type { AppEnv } from "../types";

/** The local catch-all mailbox (DEV_AUTH only): every mail the notifications consumer "sent". */
export const devMailboxPage = new Hono<AppEnv>();

/** Mails render in sandboxed frames: no scripts, no requests out of the page but images. */
const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self' data:; frame-ancestors 'none'";

route(
  devMailboxPage,
  {
    operationId: "listDevMail",
    method: "get",
    path: "/dev/mailbox.json",
    summary: "Mail kept by the local mailbox, newest first (DEV_AUTH only; 404 otherwise)",
    tags: ["development"],
    before: [devOnly],
    responses: { 200: { description: "Mails", schema: z.object({ mails: z.array(keptMailSchema) }) } },
    errors: ["not_found"],
  },
  async (c) => c.json({ mails: await devMailbox(c.env.CATALOG_KV).list() }, 200, { "Cache-Control": "no-store" }),
);

route(
  devMailboxPage,
  {
    operationId: "getDevMailbox",
    method: "get",
    path: "/dev/mailbox",
    summary: "The local mailbox as a page (DEV_AUTH only; 404 otherwise)",
    tags: ["development"],
    before: [devOnly],
    responses: { 200: { description: "HTML", mediaType: "text/html" } },
    errors: ["not_found"],
  },
  async (c) => {
    const mails = await devMailbox(c.env.CATALOG_KV).list();
    const items = mails.map(
      (m) =>
        `<article><h2>${esc(m.subject)}</h2><p><small>to ${esc(m.to)} · ${esc(m.sentAt)} · <code>${esc(m.id)}</code></small></p><iframe sandbox title="${esc(m.subject)}" style="width:100%;height:18em;border:1px solid #ccc" srcdoc="${esc(m.html)}"></iframe><details><summary>Plain text</summary><pre>${esc(m.text)}</pre></details></article>`,
    );
    const html = `<!doctype html><html><head><meta charset="utf-8"><title>Mailbox (local)</title></head><body style="font-family:sans-serif;max-width:60em;margin:auto"><h1>Mailbox (local)</h1><p>${mails.length} mail(s), newest first. Nothing here was sent: with MAIL_API_KEY set, mail goes to the e-mail API instead.</p>${items.join("") || "<p>No mail yet.</p>"}</body></html>`;
    return c.html(html, 200, { "Cache-Control": "no-store", "Content-Security-Policy": PAGE_CSP });
  },
);

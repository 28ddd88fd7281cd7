import { z } from "zod";
import { MAX_TOKEN_LIFETIME_SECONDS } from "./auth";

/**
 * The Worker's configuration: every string var of wrangler.toml, parsed once per `env` object by one zod
 * schema that holds its default and meaning. An empty string counts as unset (wrangler.toml ships empty
 * optional vars). A malformed value throws {@link ConfigError} at the entry points (fetch, queue,
 * scheduled), so a bad deployment fails loudly on its first request instead of quietly running with a
 * fallback.
 */

const unsetIfEmpty = (v: unknown) => (typeof v === "string" && v.trim() === "" ? undefined : v);
const opt = <T extends z.ZodType>(schema: T) => z.preprocess(unsetIfEmpty, schema);
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const flag = z.enum(["true", "false", "1", "0", "yes", "no", "on", "off"]).transform((v) => ["true", "1", "yes", "on"].includes(v));
const list = z.string().transform((v) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
);
const url = z.url({ protocol: /^https?$/ });

export const configSchema = z.object({
  DEV_AUTH: opt(flag.default(false)).describe("Enables POST /v1/auth/dev-token. Never on in production."),
  ORDER_SHARDS: opt(list.pipe(z.array(z.string().regex(/^[A-Z][A-Z0-9_]*$/)).min(1)).default(["SHARD_0"])).describe(
    "D1 binding names of the order shards, in order. Never reorder; only append with a migration plan.",
  ),
  CHECKOUT_WRITE: opt(z.enum(["queue", "sync"]).default("queue")).describe(
    '"queue": write-behind through the orders queue; "sync": also written to the shard before answering.',
  ),
  SHARD_BACKEND: opt(z.enum(["d1", "postgres"]).default("d1")).describe("Order shard backend."),
  PG_SHARD_URLS: opt(list.default([])).describe("Postgres connection strings, one per shard (local; production uses Hyperdrive)."),
  CHECKOUT_TIMEOUT_SECONDS: opt(int(1, 3_600).default(120)).describe(
    "A checkout with no outcome after this long is presumed dead: its charge is voided and its hold reopened.",
  ),
  CHECKOUT_GRACE_SECONDS: opt(int(1, 3_600).default(60)).describe(
    "A failed payment gives the hold this much more, never past its creation + holdSeconds + this.",
  ),
  MAX_BODY_BYTES: opt(int(1, 10_485_760).default(65_536)).describe("Largest request body accepted (413 above)."),
  REQUEST_LOG: opt(
    z
      .string()
      .regex(/^(all|errors|off|0?\.\d+|1(\.0+)?)$/, 'one of "all", "errors", "off" or a sample rate in (0, 1]')
      .default("all"),
  ).describe('"all": one JSON line per request; "errors": 4xx/5xx only; a number in (0,1]: sampled.'),
  CORS_ORIGINS: z.string().default("*").describe('Allowed origins, comma-separated, or "*"; empty: no cross-origin requests.'),
  RATE_LIMITS: opt(z.string().default("")).describe('Rate-limit overrides (lib/rate-limit.ts): "" defaults, "off" none, or JSON.'),
  TELEMETRY: opt(z.enum(["on", "off"]).default("on")).describe('"off" turns metrics and tracing off (benchmarks only).'),
  OTEL_EXPORTER_OTLP_ENDPOINT: opt(url.optional()).describe("OTLP/HTTP JSON endpoint for request spans."),
  ORGANIZER_WEBHOOK_URL: opt(url.optional()).describe("Where order.paid webhooks go through QStash (unset: none)."),
  QSTASH_URL: opt(url.optional()).describe("QStash API base (unset: Upstash's)."),
  PUBLIC_BASE_URL: opt(url.default("http://127.0.0.1:8787")).describe("The public origin of this API, for links in e-mails."),
  MAIL_FROM: opt(z.string().min(3).default("Breakwater <tickets@breakwater.invalid>")).describe("Sender of buyer e-mails."),
  MAIL_API_URL: opt(url.default("https://api.resend.com")).describe("HTTP e-mail API base (Resend-compatible)."),
  MAIL_API_KEY: opt(z.string().optional()).describe(
    "Secret: the e-mail API key; unset, mail goes to the local mailbox (DEV_AUTH) or nowhere.",
  ),
  FAULT_INJECTION: opt(flag.default(false)).describe("Enables the admin fault API for rehearsals (npm run drop). Never on in production."),
  STRIPE_API_URL: opt(url.optional()).describe("Another Stripe API base (tests: a loopback stand-in); unset: Stripe's."),
  STRIPE_SECRET_KEY: opt(z.string().optional()).describe("Secret: Stripe's secret key; unset, card payments are off."),
  STRIPE_WEBHOOK_SECRET: opt(z.string().optional()).describe("Secret: the signing secret of the Stripe webhook endpoint."),
  STRIPE_PUBLISHABLE_KEY: opt(
    z
      .string()
      .regex(/^pk_(test|live)_\w+$/, "a Stripe publishable key (pk_test_… or pk_live_…)")
      .optional(),
  ).describe("Stripe's publishable key (public): with STRIPE_SECRET_KEY set, the checkout page takes cards through Stripe.js."),
  JWKS_URL: opt(url.optional()).describe("JWKS of an identity provider; RS256/ES256/EdDSA tokens are verified against it."),
  MAX_TOKEN_LIFETIME_SECONDS: opt(int(60, 31_536_000).default(MAX_TOKEN_LIFETIME_SECONDS)).describe(
    "Tokens whose exp lies further ahead are refused.",
  ),
});

/** The parsed configuration. */
export type Config = z.output<typeof configSchema>;

/** A var that does not parse: names each bad var and why. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const parsed = new WeakMap<object, Config>();

/** The configuration of `env`, parsed once per env object; throws {@link ConfigError} when a var is malformed. */
export function config(env: object): Config {
  let c = parsed.get(env);
  if (!c) {
    const r = configSchema.safeParse(env);
    if (!r.success)
      throw new ConfigError(`invalid configuration: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    c = r.data;
    parsed.set(env, c);
  }
  return c;
}

/** The table of vars for the README: name, default and meaning, from the schema. */
export function configMarkdown(): string {
  const rows = Object.entries(configSchema.shape).map(([name, schema]) => {
    const d = configSchema.shape[name as keyof typeof configSchema.shape].safeParse(undefined);
    const def = d.success && d.data !== undefined ? `\`${JSON.stringify(d.data)}\`` : "—";
    return `| \`${name}\` | ${def} | ${schema.description ?? ""} |`;
  });
  return ["| var | default | meaning |", "|---|---|---|", ...rows].join("\n");
}

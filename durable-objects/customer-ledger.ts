import { DurableObject } from "cloudflare:workers";

/** CustomerLedger Durable Object (declared in wrangler.toml; its behaviour lands with its issue). */
export class CustomerLedger extends DurableObject<Env> {}

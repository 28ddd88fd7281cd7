import { DurableObject } from "cloudflare:workers";

/** Inventory Durable Object (declared in wrangler.toml; its behaviour lands with its issue). */
export class Inventory extends DurableObject<Env> {}

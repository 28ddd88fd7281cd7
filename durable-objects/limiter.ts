import { DurableObject } from "cloudflare:workers";

/** Limiter Durable Object (declared in wrangler.toml; its behaviour lands with its issue). */
export class Limiter extends DurableObject<Env> {}

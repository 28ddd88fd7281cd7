import { DurableObject } from "cloudflare:workers";

/** WaitingRoom Durable Object (declared in wrangler.toml; its behaviour lands with its issue). */
export class WaitingRoom extends DurableObject<Env> {}

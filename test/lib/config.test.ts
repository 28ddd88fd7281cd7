import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ConfigError, config, configSchema } from "../../lib/config";
import worker from "../../workers/index";

describe("configuration: parsed once from Env by one schema", () => {
  it("gives every var its documented default when unset or empty", () => {
    const c = config({});
    expect(c).toMatchObject({
      DEV_AUTH: false,
      ORDER_SHARDS: ["SHARD_0"],
      CHECKOUT_WRITE: "queue",
      SHARD_BACKEND: "d1",
      PG_SHARD_URLS: [],
      MAX_BODY_BYTES: 65_536,
      REQUEST_LOG: "all",
      TELEMETRY: "on",
      MAX_TOKEN_LIFETIME_SECONDS: 86_400,
    });
    expect(c.JWKS_URL).toBeUndefined();
    expect(config({ ORDER_SHARDS: " ", MAX_BODY_BYTES: "", JWKS_URL: "" })).toMatchObject({
      ORDER_SHARDS: ["SHARD_0"],
      MAX_BODY_BYTES: 65_536,
    });
  });

  it("parses lists, flags and numbers", () => {
    const c = config({ ORDER_SHARDS: "SHARD_0, SHARD_1,", DEV_AUTH: "true", MAX_BODY_BYTES: "1024", JWKS_URL: "https://id.example/jwks" });
    expect(c.ORDER_SHARDS).toEqual(["SHARD_0", "SHARD_1"]);
    expect(c.DEV_AUTH).toBe(true);
    expect(c.MAX_BODY_BYTES).toBe(1024);
    expect(c.JWKS_URL).toBe("https://id.example/jwks");
  });

  it("refuses a malformed var, naming it, instead of falling back", () => {
    for (const bad of [
      { MAX_BODY_BYTES: "64k" },
      { CHECKOUT_WRITE: "later" },
      { DEV_AUTH: "maybe" },
      { JWKS_URL: "not a url" },
      { REQUEST_LOG: "some" },
      { ORDER_SHARDS: "shard-0" },
      { TELEMETRY: "yes please" },
    ]) {
      const name = Object.keys(bad)[0] as string;
      expect(() => config(bad), name).toThrow(ConfigError);
      expect(() => config(bad), name).toThrow(name);
    }
  });

  it("documents every var of wrangler.toml's [vars]", () => {
    const vars = Object.entries(env)
      .filter(([k, v]) => /^[A-Z][A-Z0-9_]*$/.test(k) && typeof v === "string")
      .map(([k]) => k);
    const secrets = ["JWT_SECRET", "SIGNING_SECRET", "QSTASH_TOKEN", "QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"];
    for (const v of vars.filter((k) => !secrets.includes(k) && !k.startsWith("TEST_"))) expect(configSchema.shape, v).toHaveProperty(v);
  });

  it("answers every request with a 500 problem while a var is malformed, and logs why", async () => {
    const res = await worker.fetch(new Request("https://x/healthz"), { ...env, CHECKOUT_WRITE: "later" }, createExecutionContext());
    expect(res.status).toBe(500);
    expect(res.headers.get("Content-Type")).toContain("application/problem+json");
    expect(((await res.json()) as { code: string }).code).toBe("internal_error");
  });
});

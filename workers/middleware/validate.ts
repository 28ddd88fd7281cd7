import type { Context, ValidationTargets } from "hono";
import { validator } from "hono/validator";
import type { z } from "zod";
import { ApiError, type FieldIssue } from "../../lib/problem";
import type { AppEnv } from "../types";

/** zod issues as `{ path, message }` pairs for the problem document. */
function fieldIssues(error: z.ZodError): FieldIssue[] {
  return error.issues.slice(0, 50).map((i) => ({ path: i.path.map(String).join(".") || "(root)", message: i.message }));
}

/** Parses `value` with `schema` or throws 400 `validation_failed` listing every issue. */
function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ApiError("validation_failed", `The ${what} is not valid.`, { errors: fieldIssues(r.error) });
  return r.data;
}

const JSON_MEDIA = /^application\/([\w.-]+\+)?json$/i;

/**
 * Validates one part of the request with a zod schema; the result is `c.req.valid(target)`, typed.
 * For `json`, a body that is not `application/json` → 415; malformed JSON → 400 (from Hono, mapped by
 * `onError`); schema failures → 400 `validation_failed` with field issues.
 */
export const validate = <T extends keyof ValidationTargets, S extends z.ZodType>(target: T, schema: S) =>
  validator(target, (value, c: Context<AppEnv>): z.output<S> => {
    if (target === "json") {
      const type = (c.req.header("Content-Type") ?? "").split(";")[0]?.trim() ?? "";
      if (!JSON_MEDIA.test(type)) throw new ApiError("unsupported_media_type", "Send the body as application/json.");
    }
    return parseOrThrow(schema, value, target === "json" ? "request body" : target);
  });

import { childSpan, formatTraceparent } from "../../lib/trace";

/**
 * The answer floor of bench/catalog: a Worker that answers each catalog URL with exactly the status,
 * headers and body Breakwater gave for it (captured from the Breakwater server of the same run), with a
 * fresh value per request of each per-request header Breakwater sent (`X-Request-Id`; `traceparent` where
 * it sends one) — and nothing else: no routing,
 * no cache layers, no metrics, no validation. What it costs over the hello-world Worker is the price of
 * the answer the API owes (its bytes and headers) on this path; what Breakwater costs over it is the price
 * of Breakwater's code. Not part of the product.
 */

/**
 * One captured answer (bench/catalog writes them): `[name, value]` header pairs without the per-request
 * ones, the per-request headers Breakwater sent (lower-case names), and the body.
 */
export interface CapturedAnswer {
  status: number;
  headers: [string, string][];
  perRequest: PerRequestHeader[];
  body: string;
}

/** Headers whose value is new on every request. */
export type PerRequestHeader = "x-request-id" | "traceparent";

/** What a request's path is answered with; a `Headers` per answer, built once (as Breakwater does). */
type Answers = Map<string, { status: number; headers: Headers; body: string; requestId: boolean; traceparent: boolean }>;

let answers: Answers | undefined;

function load(documents: string): Answers {
  const captured = JSON.parse(documents) as Record<string, CapturedAnswer>;
  return new Map(
    Object.entries(captured).map(([p, a]) => [
      p,
      {
        status: a.status,
        headers: new Headers(a.headers),
        body: a.body,
        requestId: a.perRequest.includes("x-request-id"),
        traceparent: a.perRequest.includes("traceparent"),
      },
    ]),
  );
}

/** The Worker. */
export default {
  fetch(req: Request, env: { DOCUMENTS?: string }): Response {
    answers ??= load(env.DOCUMENTS ?? "{}");
    const url = req.url;
    const answer = answers.get(url.slice(url.indexOf("/", url.indexOf("//") + 2)));
    if (!answer) return new Response(null, { status: 404 });
    const res = new Response(answer.body, { status: answer.status, headers: answer.headers });
    if (answer.requestId) res.headers.set("X-Request-Id", crypto.randomUUID());
    if (answer.traceparent) res.headers.set("traceparent", formatTraceparent(childSpan(null)));
    return res;
  },
} satisfies ExportedHandler<{ DOCUMENTS?: string }>;

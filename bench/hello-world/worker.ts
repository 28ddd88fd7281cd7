/**
 * The hello-world baseline of bench/catalog: answers every request with a constant JSON body, no routing,
 * no middleware, no bindings. Its throughput is the ceiling of the path itself (loopback HTTP → workerd
 * through miniflare with unsafeDirectSockets), which Breakwater's catalog reads are compared against.
 */
const BODY = '{"hello":"world"}';

/** The Worker. */
export default {
  fetch(): Response {
    return new Response(BODY, { headers: { "Content-Type": "application/json; charset=utf-8" } });
  },
} satisfies ExportedHandler;

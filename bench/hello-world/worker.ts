import { HELLO_BODY, HELLO_CONTENT_TYPE } from "./answer";

/**
 * The hello-world baseline of bench/catalog: answers every request with a constant JSON body, no routing,
 * no middleware, no bindings. Its throughput is the ceiling of the path itself (loopback HTTP → workerd
 * through miniflare with unsafeDirectSockets), which Breakwater's catalog reads are compared against.
 */

/** The Worker. */
export default {
  fetch(): Response {
    return new Response(HELLO_BODY, { headers: { "Content-Type": HELLO_CONTENT_TYPE } });
  },
} satisfies ExportedHandler;

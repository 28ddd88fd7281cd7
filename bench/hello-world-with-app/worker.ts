import * as breakwater from "../../workers/index";
import helloWorld from "../hello-world/worker";

/**
 * A diagnosis baseline of bench/stalls (`TARGETS=hello-world-with-app`) and bench/catalog
 * (`HELLO=hello-world-with-app`): the hello-world Worker (it answers every request with bench/hello-world's
 * own `fetch`) in an isolate that has also loaded Breakwater's whole module graph and never calls it. Its collections against hello-world's are what carrying Breakwater's code costs, apart
 * from anything Breakwater does per request (bench/README.md, "fifth session"). Not part of the product.
 */
// Kept reachable, so neither the bundler nor V8 drops the modules and what they build when they load.
(globalThis as { breakwater?: unknown }).breakwater = breakwater;

/** The Worker: hello-world's. */
export default helloWorld;

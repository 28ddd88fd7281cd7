import { buildBundle } from "../../scripts/serve";

/**
 * Global setup of the `node` project: builds Breakwater's bundle once. Its test files run in parallel and
 * each starts a server with `build: false`; building in each of them raced on the same output folder.
 */
export default function setup(): void {
  buildBundle();
}

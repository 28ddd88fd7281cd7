/**
 * Layers point one way (docs/design.md, "Code layout"): workers/ -> durable-objects/, queues/ -> lib/.
 * `npm test` runs this (`npm run deps`); any cycle or upward import fails it.
 */
module.exports = {
  forbidden: [
    {
      name: "no-cycles",
      severity: "error",
      comment: "An import cycle makes load order and ownership unclear: cut it by moving the shared piece down into lib/.",
      from: {},
      to: { circular: true },
    },
    {
      name: "lib-is-the-bottom",
      severity: "error",
      comment:
        "lib/ is the domain: it imports nothing from workers/, durable-objects/ or queues/ (use the generated Env types or a narrow interface).",
      from: { path: "^lib/" },
      to: { path: "^(workers|durable-objects|queues)/" },
    },
    {
      name: "objects-and-consumers-below-the-edge",
      severity: "error",
      comment: "Durable Objects and queue consumers do not import the edge Worker (workers/).",
      from: { path: "^(durable-objects|queues)/" },
      to: { path: "^workers/" },
    },
    {
      name: "objects-and-consumers-are-siblings",
      severity: "error",
      comment: "A Durable Object and a queue consumer do not import each other: what both need lives in lib/.",
      from: { path: "^durable-objects/" },
      to: { path: "^queues/" },
    },
    {
      name: "consumers-do-not-import-objects",
      severity: "error",
      comment: "A queue consumer talks to a Durable Object through its stub (Env), not its class.",
      from: { path: "^queues/" },
      to: { path: "^durable-objects/", dependencyTypesNot: ["type-only"] },
    },
    {
      name: "product-does-not-import-tests-or-bench",
      severity: "error",
      from: { path: "^(lib|workers|durable-objects|queues)/" },
      to: { path: "^(test|bench|scripts)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    parser: "swc",
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    // .tsx (the server-rendered pages, workers/pages and workers/routes/pages.tsx) is left out: depcruise
    // parses every file with swc as plain TypeScript (no TSX option), and TypeScript 7 has no compiler API
    // for its "tsc" parser. Those files live in workers/, the top layer, so the layer rules cannot bind
    // them; what goes unchecked for them is cycles and imports of test/bench/scripts.
    exclude: { path: "(^|/)worker-configuration\\.d\\.ts$|\\.tsx$" },
  },
};

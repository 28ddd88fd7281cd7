import net from "node:net";

/** A free TCP port on the loopback interface. */
export const freePort = (): Promise<number> =>
  new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });

/** Local-only vars and secrets for a test server (never used in production). */
export const testServerVars = (extra: Record<string, string> = {}): Record<string, string> => ({
  DEV_AUTH: "true",
  REQUEST_LOG: "off",
  JWT_SECRET: "e2e-jwt-secret-0123456789abcdef",
  SIGNING_SECRET: "e2e-signing-secret-0123456789",
  QSTASH_TOKEN: "x",
  QSTASH_CURRENT_SIGNING_KEY: "x",
  QSTASH_NEXT_SIGNING_KEY: "x",
  ...extra,
});

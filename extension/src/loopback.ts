/**
 * RFC 8252 §7.3 loopback redirect: a one-shot HTTP listener on 127.0.0.1 (any
 * free port; the issuer registers `http://127.0.0.1/callback` without a port).
 */
import { createServer, type Server } from "node:http";

export interface Redirect {
  redirectUri: string;
  /** Resolves with the full callback URL (query included). */
  callback: Promise<URL>;
  dispose(): void;
}

const DONE_PAGE = `<!doctype html><meta charset="utf-8"><title>Softcodes</title>
<p>Signed in. You can close this tab and return to VS Code.</p>`;

export async function loopbackRedirect(path = "/callback"): Promise<Redirect> {
  let resolve!: (url: URL) => void;
  const callback = new Promise<URL>((r) => {
    resolve = r;
  });
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://127.0.0.1");
    if (request.method !== "GET" || url.pathname !== path) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, {
      "Content-Type": "text/html; charset=utf-8",
      "Cache-Control": "no-store",
      "Referrer-Policy": "no-referrer",
    });
    response.end(DONE_PAGE);
    resolve(new URL(`${redirectUri}${url.search}`));
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => ok());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no loopback port");
  const redirectUri = `http://127.0.0.1:${address.port}${path}`;
  return {
    redirectUri,
    callback,
    dispose: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

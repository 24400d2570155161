/**
 * Serve the usage handler with Deno:
 *
 *   SUPABASE_URL=... SUPABASE_SERVICE_ROLE_KEY=... ISSUER_URL=https://issuer.example.com \
 *     deno run --allow-net --allow-env docs/examples/backend/serve.ts
 *
 * JWT_SECRET (HS256), JWT_ISSUER, JWT_AUDIENCE and PORT are optional.
 */

import { createTokenVerifier, serviceClient, usageHandler } from "./usage_handler.ts";

function required(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is required`);
  return value;
}

const supabase = serviceClient(required("SUPABASE_URL"), required("SUPABASE_SERVICE_ROLE_KEY"));
const verify = createTokenVerifier({
  issuer: Deno.env.get("JWT_ISSUER") ?? "softcodes.ai",
  audience: Deno.env.get("JWT_AUDIENCE") ?? "vscode-extension",
  jwksUrl: `${required("ISSUER_URL")}/.well-known/jwks.json`,
  hs256Secret: Deno.env.get("JWT_SECRET"),
  supabase,
});

Deno.serve(
  { hostname: "127.0.0.1", port: Number(Deno.env.get("PORT") ?? "8100") },
  usageHandler({ verify, supabase }),
);

/**
 * Entry point of the `metered-usage` Edge Function: wires the handler to
 * Deno.serve. `verify_jwt = false` in supabase/config.toml because the
 * function verifies OUR tokens (see handler.ts), not Supabase's.
 *
 * Secrets: JWT_SECRET (HS256) and/or ISSUER_JWKS_URL (ES256), optional
 * JWT_ISSUER / JWT_AUDIENCE; the database through SUPABASE_DB_URL (set by
 * Supabase) or SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY (RPC_BACKEND=supabase).
 */

import { verifierFromEnv } from "../_shared/jwt.ts";
import { rpcFromEnv } from "../_shared/rpc.ts";
import { handleUsage } from "./handler.ts";

const deps = { rpc: rpcFromEnv(), verifier: verifierFromEnv() };

Deno.serve((req) => handleUsage(req, deps));

/**
 * Entry point of the `clerk-webhooks` Edge Function: wires the handler to
 * Deno.serve. `verify_jwt = false` in supabase/config.toml: Svix signs the
 * deliveries, Clerk sends no Supabase JWT.
 *
 * Secrets: CLERK_WEBHOOK_SECRET (the endpoint's `whsec_...` signing secret;
 * CLERK_WEBHOOK_SIGNING_SECRET is accepted too); the database through
 * SUPABASE_DB_URL (set by Supabase) or SUPABASE_URL +
 * SUPABASE_SERVICE_ROLE_KEY (RPC_BACKEND=supabase).
 */

import { rpcFromEnv } from "../_shared/rpc.ts";
import { handleClerkWebhook } from "./handler.ts";
import { importSigningSecret } from "./svix.ts";

const secret = Deno.env.get("CLERK_WEBHOOK_SECRET") || Deno.env.get("CLERK_WEBHOOK_SIGNING_SECRET");
if (!secret) throw new Error("CLERK_WEBHOOK_SECRET is not set");

const deps = { rpc: rpcFromEnv(), signingKey: await importSigningSecret(secret) };

Deno.serve((req) => handleClerkWebhook(req, deps));

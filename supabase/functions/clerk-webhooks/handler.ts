/**
 * clerk-webhooks: Clerk events delivered by Svix keep organizations, users
 * and seats true.
 *
 * 1. The signature is verified over the RAW body bytes (svix.ts) before
 *    anything is parsed.
 * 2. The event goes, as received, to ONE SQL RPC, `public.apply_clerk_event`
 *    (service_role only), which deduplicates by `svix-id`, ignores stale or
 *    unknown events and upserts organizations, users and seats. The rules
 *    (role mapping, what a deletion does) live there, not here.
 *
 * Answers: 200 with the RPC's `public.clerk_event_result` as JSON (`applied`,
 * `duplicate`, `outcome`, `reason`, ...; Svix stops retrying); 401
 * `{error: "invalid_signature", error_description: <reason>}`; 400 for a
 * verified body that is not a Clerk event; 413 over 1 MiB; 503 when the
 * database is away (Svix retries with backoff, and dedup makes retries safe).
 */

import { readBodyLimited } from "../_shared/bytes.ts";
import { error, json, methodNotAllowed } from "../_shared/http.ts";
import { type CreditsRpc, RpcError } from "../_shared/rpc.ts";
import {
  readSvixHeaders,
  type SigningKey,
  verifyWebhook,
  WebhookVerificationError,
} from "./svix.ts";

export const MAX_BODY_BYTES = 1024 * 1024;

export interface WebhookDeps {
  rpc: CreditsRpc;
  signingKey: SigningKey;
  /** Seconds since the epoch; injectable for tests. */
  now?: () => number;
  log?: (message: string, detail?: Record<string, unknown>) => void;
}

export async function handleClerkWebhook(req: Request, deps: WebhookDeps): Promise<Response> {
  const log = deps.log ?? ((message, detail) => console.error(message, detail ?? {}));
  if (req.method !== "POST") return methodNotAllowed("POST");

  const raw = await readBodyLimited(req, MAX_BODY_BYTES);
  if (raw === null) return error(413, "request_too_large");

  const headers = readSvixHeaders(req.headers);
  const now = deps.now ? deps.now() : Date.now() / 1000;
  try {
    await verifyWebhook(deps.signingKey, headers, raw, now);
  } catch (err) {
    if (err instanceof WebhookVerificationError) {
      log("clerk-webhooks: refused delivery", { reason: err.reason, svix_id: headers?.id });
      return error(401, "invalid_signature", err.reason);
    }
    throw err;
  }

  // Verified: now (and only now) read it. Not re-serialised: the SQL gets the text.
  let text: string;
  let event: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
    event = JSON.parse(text);
  } catch {
    return error(400, "invalid_event", "body is not JSON");
  }
  if (
    typeof event !== "object" || event === null || Array.isArray(event) ||
    typeof (event as Record<string, unknown>).type !== "string"
  ) {
    return error(400, "invalid_event", "body is not a Clerk event");
  }

  try {
    const result = await deps.rpc.applyClerkEvent(headers!.id, text);
    return json(200, result);
  } catch (err) {
    if (err instanceof RpcError && err.code !== null && err.code.startsWith("22")) {
      // The RPC refuses a malformed event (e.g. no data.id) with 22023.
      log("clerk-webhooks: event refused", { svix_id: headers!.id, message: err.message });
      return error(400, "invalid_event", err.message);
    }
    if (err instanceof RpcError && err.retryable) {
      log("clerk-webhooks: database unavailable", { svix_id: headers!.id, code: err.code });
      return error(503, "database_unavailable", "database unavailable, retry", {
        "Retry-After": "5",
      });
    }
    log("clerk-webhooks: apply failed", { svix_id: headers!.id, error: String(err) });
    return error(500, "internal_error");
  }
}

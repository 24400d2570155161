/**
 * metered-usage: the edge equivalent of `POST /api/extension/usage`.
 *
 *   POST /functions/v1/metered-usage
 *   Authorization: Bearer <our access or long-lived extension token>
 *   Idempotency-Key: <optional, forwarded as p_idempotency_key>
 *   {"amount": 1.5, "description": "completion", "context": {...}}
 *
 * The function verifies the token and forwards to `deduct_credits_pooled`;
 * every business rule (seat gating, subscription status, no personal
 * fallback, idempotency, validation) lives in SQL. The org comes from the
 * verified token ONLY: a `clerk_org_id` in the body is ignored (A4).
 *
 * Answers (the same shapes as the Python issuer's route):
 * 200 `{ok, pool, remaining, transaction_id, replayed}`;
 * 402 `{error: "insufficient_credits", pool, organization_name}`;
 * 403 `{error: "no_active_seat" | "no_active_subscription" | "unknown_user" | "unknown_organization", pool}`;
 * 403 `{error: "seat_cap_reached", pool, error_description}` (the seat's cap, not the pool: H2);
 * 401 `{error: "invalid_token", error_description}` (missing, bad, expired,
 * wrong type, revoked); 400 `{error: "invalid_request", error_description}`
 * (bad body, or SQLSTATE 22023 from the RPC with its message);
 * 409 `{error: "idempotency_key_reused"}`; 413 `{error: "request_too_large"}`;
 * 503 `{error: "database_unavailable"}` when the database is away.
 */

import { readBodyLimited, sha256Hex } from "../_shared/bytes.ts";
import { error, json, methodNotAllowed } from "../_shared/http.ts";
import { InvalidToken, type TokenClaims, type TokenVerifier } from "../_shared/jwt.ts";
import { type CreditsRpc, RpcError } from "../_shared/rpc.ts";

export const MAX_BODY_BYTES = 64 * 1024;

/** SQLSTATE of "same idempotency key, other arguments" (deduct_credits_pooled). */
export const IDEMPOTENCY_CONFLICT_SQLSTATE = "23505";

/** Refusal reasons of `deduct_credits_pooled` answered with 403. */
/** The message of `seat_cap_reached`, as the Python issuer's (flows/usage.py SEAT_CAP_MESSAGE). */
export const SEAT_CAP_MESSAGE =
  "the pool is not short: this seat reached the spending cap its organization set " +
  "for the current period";

const FORBIDDEN_REASONS = new Set([
  "no_active_seat",
  "no_active_subscription",
  "unknown_user",
  "unknown_organization",
  "account_closed",
]);

// F5: a valid amount, as the issuer's (py/issuer/amounts.py): ASCII digits,
// an optional sign and fraction; no exponent ("1e3" is not 1000), no other
// digits, no whitespace (not trimmed). The database checks the rest.
const DECIMAL = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/;

export interface UsageDeps {
  rpc: CreditsRpc;
  verifier: TokenVerifier;
  /** Where failures are reported (never with secrets); default `console.error`. */
  log?: (message: string, detail?: Record<string, unknown>) => void;
}

function unauthorized(reason: string): Response {
  // RFC 6750 §3.1: a request without credentials gets a challenge without an error code.
  const challenge = reason === "missing_token"
    ? "Bearer"
    : `Bearer error="invalid_token", error_description="${reason}"`;
  return error(401, "invalid_token", reason, { "WWW-Authenticate": challenge });
}

function bearerToken(req: Request): string | null {
  const header = req.headers.get("authorization");
  if (header === null) return null;
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(header);
  return match ? match[1] : null;
}

interface UsageBody {
  amount: string;
  description: string;
  context: unknown;
}

function parseBody(raw: Uint8Array): UsageBody | string {
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
  } catch {
    return "body must be a JSON object";
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return "body must be a JSON object";
  }
  const b = body as Record<string, unknown>;
  let amount: string;
  if (typeof b.amount === "number" && Number.isFinite(b.amount)) {
    amount = String(b.amount);
  } else if (typeof b.amount === "string" && DECIMAL.test(b.amount)) {
    amount = b.amount;
  } else {
    return "amount must be a number";
  }
  if (typeof b.description !== "string") return "description must be a string";
  // b.clerk_org_id, if any, is deliberately not read.
  return { amount, description: b.description, context: b.context ?? {} };
}

export async function handleUsage(req: Request, deps: UsageDeps): Promise<Response> {
  const log = deps.log ?? ((message, detail) => console.error(message, detail ?? {}));
  if (req.method !== "POST") return methodNotAllowed("POST");

  const token = bearerToken(req);
  if (token === null) return unauthorized("missing_token");
  let claims: TokenClaims;
  try {
    claims = await deps.verifier.verify(token, ["access", "extension_long_lived"]);
  } catch (err) {
    if (err instanceof InvalidToken) {
      if (err.reason === "keys_unavailable") {
        log("metered-usage: JWKS unavailable", { reason: err.reason });
        return error(503, "keys_unavailable", "verification keys unavailable", {
          "Retry-After": "1",
        });
      }
      return unauthorized(err.reason);
    }
    throw err;
  }

  const raw = await readBodyLimited(req, MAX_BODY_BYTES);
  if (raw === null) return error(413, "request_too_large");
  const body = parseBody(raw);
  if (typeof body === "string") return error(400, "invalid_request", body);

  const idempotencyKey = req.headers.get("idempotency-key");

  try {
    if (claims.type === "extension_long_lived") {
      // Long-lived tokens must also be live in the store (T7): revoked or
      // rotated tokens stop working although their signature is valid.
      const row = await deps.rpc.validateExtensionToken(await sha256Hex(token));
      if (row === null || row.clerk_user_id !== claims.sub) return unauthorized("revoked");
    }
    const result = await deps.rpc.deductCreditsPooled({
      clerkUserId: claims.sub,
      amount: body.amount,
      description: body.description,
      clerkOrgId: claims.pool === "organization" ? claims.clerk_org_id : null,
      idempotencyKey: idempotencyKey === null || idempotencyKey === "" ? null : idempotencyKey,
      context: body.context,
    });
    if (result.ok) {
      return json(200, {
        ok: true,
        pool: result.pool,
        // A JSON number, as the Python issuer's route answers (the ledger keeps the exact decimal).
        remaining: Number(result.balance ?? 0),
        transaction_id: result.transaction_id,
        replayed: result.replayed === true,
      });
    }
    if (result.reason === "insufficient_credits") {
      return json(402, {
        error: "insufficient_credits",
        pool: result.pool ?? claims.pool,
        organization_name: claims.pool === "organization" ? claims.organization_name : null,
      });
    }
    if (result.reason === "seat_cap_reached") {
      return json(403, {
        error: "seat_cap_reached",
        pool: result.pool ?? claims.pool,
        error_description: SEAT_CAP_MESSAGE,
      });
    }
    if (result.reason !== null && FORBIDDEN_REASONS.has(result.reason)) {
      return json(403, { error: result.reason, pool: result.pool ?? claims.pool });
    }
    log("metered-usage: unexpected refusal", { reason: result.reason });
    return error(500, "internal_error");
  } catch (err) {
    return rpcErrorResponse(err, log);
  }
}

/** Map an RPC failure to HTTP: bad input 400, idempotency conflict 409, database away 503. */
export function rpcErrorResponse(
  err: unknown,
  log: (message: string, detail?: Record<string, unknown>) => void,
): Response {
  if (err instanceof RpcError) {
    if (err.code === IDEMPOTENCY_CONFLICT_SQLSTATE) {
      return error(409, "idempotency_key_reused", err.message);
    }
    // Input the database refused (22023 and its class, constraint checks, raise): the caller's.
    if (err.code !== null && (/^(22|23)/.test(err.code) || err.code === "P0001")) {
      return error(400, "invalid_request", err.message);
    }
    if (err.retryable) {
      log("metered-usage: database unavailable", { code: err.code });
      return error(503, "database_unavailable", "database unavailable, retry", {
        "Retry-After": "1",
      });
    }
    log("metered-usage: rpc failed", { code: err.code, message: err.message });
    return error(500, "internal_error");
  }
  log("metered-usage: unexpected error", { error: String(err) });
  return error(500, "internal_error");
}

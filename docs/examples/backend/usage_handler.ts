/**
 * A Node/Deno backend that spends credits for callers holding the issuer's
 * tokens: it verifies the bearer token, then calls `deduct_credits_pooled`
 * with supabase-js (PostgREST, service role) using the org FROM THE TOKEN.
 *
 * The handler is a plain `(Request) => Promise<Response>`: `Deno.serve(handler)`
 * (see serve.ts), or any Node 18+ server that speaks fetch's Request/Response.
 * Guide: docs/backend-integration.md. Tests: usage_handler_test.ts.
 */

import { createClient, type SupabaseClient } from "npm:@supabase/supabase-js@2.119.1";
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  type JWTPayload,
  jwtVerify,
  type JWTVerifyGetKey,
} from "npm:jose@6.2.18";

// #region verify
/** The claims the backend relies on (every token carries all of them; see docs/architecture.md). */
export interface IssuerClaims extends JWTPayload {
  sub: string;
  type: "access" | "extension_long_lived";
  pool: "organization" | "personal";
  clerk_org_id: string | null;
  organization_id: string | null;
  organization_name: string | null;
  seat_id: string | null;
}

export interface VerifierOptions {
  /** JWT_ISSUER and JWT_AUDIENCE of the issuer (defaults `softcodes.ai`, `vscode-extension`). */
  issuer: string;
  audience: string;
  /** ES256: the issuer's `/.well-known/jwks.json` (no shared secret needed). */
  jwksUrl?: string;
  /** HS256: the issuer's JWT_SECRET, if it signs HS256. */
  hs256Secret?: string;
  /** Long-lived extension tokens are looked up (revocation) with this client. */
  supabase: SupabaseClient;
}

export class InvalidToken extends Error {
  constructor(readonly reason: string) {
    super(`invalid token: ${reason}`);
    this.name = "InvalidToken";
  }
}

const TYP = { access: "at+jwt", extension_long_lived: "JWT" } as const;

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function createTokenVerifier(
  options: VerifierOptions,
): (token: string) => Promise<IssuerClaims> {
  const jwks = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl)) : null;
  const secret = options.hs256Secret ? new TextEncoder().encode(options.hs256Secret) : null;
  const algorithms = [...(jwks ? ["ES256"] : []), ...(secret ? ["HS256"] : [])];
  const key: JWTVerifyGetKey = (header, token) => {
    if (header.alg === "HS256" && secret && header.kid === undefined) return secret;
    if (header.alg === "ES256" && jwks) return jwks(header, token);
    throw new InvalidToken("alg_not_allowed");
  };

  return async (token: string): Promise<IssuerClaims> => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        algorithms, // an explicit allow-list: never `none`
        issuer: options.issuer,
        audience: options.audience,
        requiredClaims: ["sub", "exp", "iat", "jti"],
      }));
    } catch (error) {
      throw error instanceof InvalidToken ? error : new InvalidToken("bad_token");
    }
    const claims = payload as IssuerClaims;
    // The header `typ` must match the token's type (a long-lived token is not an access token).
    const typ = decodeProtectedHeader(token).typ?.toLowerCase();
    if (!(claims.type in TYP) || typ !== TYP[claims.type].toLowerCase()) {
      throw new InvalidToken("wrong_type");
    }
    if (
      claims.pool === "organization" &&
      !(claims.clerk_org_id && claims.organization_id && claims.seat_id)
    ) {
      throw new InvalidToken("bad_claims");
    }
    if (claims.type === "extension_long_lived") {
      // Long-lived tokens are revocable: the database knows their hash (never the token).
      const { data, error } = await options.supabase.rpc("validate_extension_token", {
        p_token_hash: await sha256Hex(token),
      });
      if (error) throw new DatabaseUnavailable(error.message);
      // A public.extension_token_result: ok false (unknown, revoked, expired) is a refusal.
      if (!data?.ok || data.clerk_user_id !== claims.sub) throw new InvalidToken("revoked");
    }
    return claims;
  };
}
// #endregion

// #region deduct
/** The answer of `deduct_credits_pooled` (`public.credit_result`). */
export interface CreditResult {
  ok: boolean;
  pool: "organization" | "personal";
  reason: string | null;
  transaction_id: string | null;
  amount: number | null;
  balance: number | null;
  replayed: boolean;
}

export class DatabaseUnavailable extends Error {}

/** A call the database refused: SQLSTATE 22023 (bad input) or 23505 (idempotency key reused). */
export class RpcRefused extends Error {
  constructor(readonly sqlstate: string, message: string) {
    super(message);
  }
}

export async function spendCredits(
  supabase: SupabaseClient,
  claims: IssuerClaims,
  spend: { amount: string; description: string; idempotencyKey: string | null; context: object },
): Promise<CreditResult> {
  const { data, error } = await supabase.rpc("deduct_credits_pooled", {
    p_clerk_user_id: claims.sub,
    p_amount: spend.amount, // a decimal string stays exact; PostgREST casts it to numeric
    p_description: spend.description,
    // The org comes from the verified token, never from the request body.
    p_clerk_org_id: claims.pool === "organization" ? claims.clerk_org_id : null,
    p_idempotency_key: spend.idempotencyKey,
    p_context: spend.context,
  });
  if (error) {
    if (error.code === "22023" || error.code === "23505") {
      throw new RpcRefused(error.code, error.message);
    }
    throw new DatabaseUnavailable(error.message); // unreachable, PostgREST errors: retry later
  }
  return data as CreditResult;
}
// #endregion

// #region handler
const COST = "1.5";

const REFUSAL_STATUS: Record<string, number> = {
  insufficient_credits: 402,
  no_active_seat: 403,
  no_active_subscription: 403,
  unknown_user: 403,
  unknown_organization: 403,
  account_closed: 403,
};

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers });
}

/** POST /summaries: costs 1.5 credits from the pool the token names. */
export function usageHandler(deps: {
  verify: (token: string) => Promise<IssuerClaims>;
  supabase: SupabaseClient;
}): (request: Request) => Promise<Response> {
  return async (request: Request): Promise<Response> => {
    const auth = request.headers.get("authorization") ?? "";
    const token = auth.match(/^Bearer (\S+)$/i)?.[1];
    try {
      if (!token) throw new InvalidToken("missing_bearer_token");
      const claims = await deps.verify(token);
      const body = await request.json().catch(() => null);
      if (typeof body?.text !== "string") {
        return json({ error: "invalid_request", error_description: "text is required" }, 400);
      }
      const result = await spendCredits(deps.supabase, claims, {
        amount: COST,
        description: "summary",
        idempotencyKey: request.headers.get("idempotency-key"),
        context: { chars: body.text.length },
      });
      if (!result.ok) {
        const reason = result.reason ?? "refused";
        const refusal: Record<string, unknown> = { error: reason, pool: result.pool };
        if (reason === "insufficient_credits") {
          refusal.organization_name = claims.organization_name;
        }
        return json(refusal, REFUSAL_STATUS[reason] ?? 403);
      }
      return json({
        summary: body.text.slice(0, 40),
        pool: result.pool,
        remaining: result.balance,
        replayed: result.replayed,
      });
    } catch (error) {
      if (error instanceof InvalidToken) {
        const headers = { "WWW-Authenticate": 'Bearer error="invalid_token"' };
        return json({ error: "invalid_token", error_description: error.message }, 401, headers);
      }
      if (error instanceof RpcRefused && error.sqlstate === "23505") {
        return json({ error: "idempotency_key_reused", error_description: error.message }, 409);
      }
      if (error instanceof RpcRefused) {
        return json({ error: "invalid_request", error_description: error.message }, 400);
      }
      if (error instanceof DatabaseUnavailable) {
        return json({ error: "database_unavailable" }, 503, { "Retry-After": "1" });
      }
      throw error;
    }
  };
}
// #endregion

// #region client
/** The service-role client: server side only, never in a browser or the extension. */
export function serviceClient(url: string, serviceRoleKey: string): SupabaseClient {
  return createClient(url, serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });
}
// #endregion

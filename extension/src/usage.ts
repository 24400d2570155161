/**
 * The metered business call (`POST /api/extension/usage`) and what each answer
 * means. The bearer request goes through oauth4webapi's protectedResourceRequest;
 * the org that pays is read from the VERIFIED access token (jose), never from an
 * unverified decode, and never sent in the body (the issuer refuses that).
 */
import * as oauth from "oauth4webapi";
import { httpOptions } from "./oauth.js";
import { type Session } from "./session.js";

export interface UsageRequest {
  /** Credits, > 0, at most 4 decimals. A decimal string keeps it exact. */
  amount: number | string;
  description: string;
  context?: Record<string, unknown>;
  /** One per logical operation, reused on every retry of it. */
  idempotencyKey: string;
}

export type UsageOutcome =
  | { kind: "charged"; pool: string; remaining: number; replayed: boolean; orgName: string | null }
  /** 402: the pool is short; nothing was charged, personal credits are never used instead. */
  | { kind: "insufficient_credits"; pool: string; clerkOrgId: string | null; orgName: string | null }
  /** 403 `no_active_seat`: the token names an org where the seat is no longer active. */
  | { kind: "no_active_seat"; clerkOrgId: string | null; orgName: string | null }
  /** 403 for another reason (`no_active_subscription`, ...). */
  | { kind: "forbidden"; error: string; clerkOrgId: string | null; orgName: string | null }
  /** L2: the chosen org was lost on refresh; nothing was sent. */
  | { kind: "org_scope_lost"; clerkOrgId: string; reason: string };

/** Anything other than the outcomes above (400, 409, 503, ...): a bug or a retry later. */
export class UsageError extends Error {
  constructor(readonly status: number, readonly error: string) {
    super(`${status} ${error}`);
    this.name = "UsageError";
  }
}

async function body(response: Response): Promise<Record<string, unknown>> {
  try {
    const value: unknown = await response.json();
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

async function send(issuerUrl: string, token: string, request: UsageRequest): Promise<Response> {
  const url = new URL("/api/extension/usage", issuerUrl);
  const headers = new Headers({
    "Content-Type": "application/json",
    "Idempotency-Key": request.idempotencyKey,
  });
  const payload = JSON.stringify({
    amount: request.amount,
    description: request.description,
    context: request.context ?? {},
  });
  try {
    return await oauth.protectedResourceRequest(token, "POST", url, headers, payload, httpOptions(url));
  } catch (error) {
    // A 401 with a Bearer challenge arrives as an error; hand back its response.
    if (error instanceof oauth.WWWAuthenticateChallengeError) return error.response;
    throw error;
  }
}

/** Charge `request` to the pool the session's token names; 401 → refresh once, same key. */
export async function recordUsage(
  session: Session,
  request: UsageRequest,
): Promise<UsageOutcome> {
  let stored = await session.accessToken();
  if (stored.orgLost) {
    return { kind: "org_scope_lost", clerkOrgId: stored.orgLost.clerk_org_id, reason: stored.orgLost.reason };
  }
  const issuerUrl = session.issuer.config.issuerUrl;
  let response = await send(issuerUrl, stored.accessToken, request);
  if (response.status === 401) {
    await response.body?.cancel();
    stored = await session.refresh(); // ReauthRequired when the refresh is refused
    if (stored.orgLost) {
      return { kind: "org_scope_lost", clerkOrgId: stored.orgLost.clerk_org_id, reason: stored.orgLost.reason };
    }
    response = await send(issuerUrl, stored.accessToken, request);
  }
  // Who pays, as the VERIFIED token says.
  const claims = await session.issuer.verifyAccessToken(stored.accessToken);
  const org = { clerkOrgId: claims.clerk_org_id, orgName: claims.organization_name };
  const answer = await body(response);
  if (response.ok) {
    return {
      kind: "charged",
      pool: String(answer["pool"]),
      remaining: Number(answer["remaining"]),
      replayed: answer["replayed"] === true,
      orgName: org.orgName,
    };
  }
  const error = typeof answer["error"] === "string" ? answer["error"] : "http_error";
  if (response.status === 402) {
    const name = answer["organization_name"];
    return {
      kind: "insufficient_credits",
      pool: String(answer["pool"]),
      clerkOrgId: org.clerkOrgId,
      orgName: typeof name === "string" ? name : org.orgName,
    };
  }
  if (response.status === 403 && error === "no_active_seat") return { kind: "no_active_seat", ...org };
  if (response.status === 403) return { kind: "forbidden", error, ...org };
  throw new UsageError(response.status, error);
}

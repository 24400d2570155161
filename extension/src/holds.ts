/**
 * Holds around a streamed completion (issue 20, H1): its cost is known only
 * when the stream ends, so the extension reserves the most it may cost first
 * (`POST /api/extension/usage/authorize`), runs the stream, then charges what
 * it really cost (`/capture`: at most the hold, the rest is released) or
 * releases everything when the stream was cancelled or failed (`/void`). A
 * hold nobody captures expires on its own (default 5 minutes), so a crash
 * between the two never keeps credits reserved for long. The pool is the one
 * the VERIFIED token names, as for `/api/extension/usage`.
 */
import * as oauth from "oauth4webapi";
import { httpOptions } from "./oauth.js";
import { type Session } from "./session.js";
import { UsageError, type UsageOutcome } from "./usage.js";

export interface StreamRequest {
  /** The most the completion may cost, reserved before it starts (> 0, at most 4 decimals). */
  maxAmount: number | string;
  description: string;
  context?: Record<string, unknown>;
  /** One per completion, reused on every retry of its authorize. */
  idempotencyKey: string;
  /** How long the hold may be captured: 1 to 3600 s (the issuer's default: 300). */
  ttlSeconds?: number;
}

/** What the stream reports when it ends: its real cost (0 releases the whole hold). */
export interface StreamEnd {
  cost: number | string;
}

export type HoldOutcome =
  | {
    kind: "captured";
    pool: string;
    holdId: string;
    held: number;
    charged: number;
    remaining: number;
    orgName: string | null;
  }
  | { kind: "released"; pool: string; holdId: string; released: number }
  /** The hold was refused (402 / 403 / org_scope_lost): the stream never started. */
  | Exclude<UsageOutcome, { kind: "charged" }>;

async function json(response: Response): Promise<Record<string, unknown>> {
  try {
    const value: unknown = await response.json();
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function errorOf(answer: Record<string, unknown>): string {
  return typeof answer["error"] === "string" ? answer["error"] : "http_error";
}

async function post(
  issuerUrl: string,
  token: string,
  path: "authorize" | "capture" | "void",
  payload: Record<string, unknown>,
  idempotencyKey?: string,
): Promise<Response> {
  const url = new URL(`/api/extension/usage/${path}`, issuerUrl);
  const headers = new Headers({ "Content-Type": "application/json" });
  if (idempotencyKey) headers.set("Idempotency-Key", idempotencyKey);
  try {
    return await oauth.protectedResourceRequest(
      token,
      "POST",
      url,
      headers,
      JSON.stringify(payload),
      httpOptions(url),
    );
  } catch (error) {
    if (error instanceof oauth.WWWAuthenticateChallengeError) return error.response;
    throw error;
  }
}

/** Capture or void, retried once on a network error: both are safe to repeat (a repeat replays). */
async function settle(
  session: Session,
  path: "capture" | "void",
  payload: Record<string, unknown>,
): Promise<Response> {
  const issuerUrl = session.issuer.config.issuerUrl;
  let stored = await session.accessToken();
  let response: Response;
  try {
    response = await post(issuerUrl, stored.accessToken, path, payload);
  } catch {
    response = await post(issuerUrl, stored.accessToken, path, payload);
  }
  if (response.status === 401) {
    await response.body?.cancel();
    stored = await session.refresh();
    response = await post(issuerUrl, stored.accessToken, path, payload);
  }
  return response;
}

/**
 * Run `work` inside a hold: authorize `request.maxAmount`, run the stream,
 * capture its cost (at most the hold) or void the hold when `work` throws
 * (cancelled, failed; the error is rethrown after the void).
 */
export async function withHold(
  session: Session,
  request: StreamRequest,
  work: () => Promise<StreamEnd>,
): Promise<HoldOutcome> {
  let stored = await session.accessToken();
  if (stored.orgLost) {
    return { kind: "org_scope_lost", clerkOrgId: stored.orgLost.clerk_org_id, reason: stored.orgLost.reason };
  }
  const issuerUrl = session.issuer.config.issuerUrl;
  const payload: Record<string, unknown> = {
    amount: request.maxAmount,
    description: request.description,
    context: request.context ?? {},
  };
  if (request.ttlSeconds !== undefined) payload["ttl_seconds"] = request.ttlSeconds;
  let response = await post(issuerUrl, stored.accessToken, "authorize", payload, request.idempotencyKey);
  if (response.status === 401) {
    await response.body?.cancel();
    stored = await session.refresh();
    if (stored.orgLost) {
      return { kind: "org_scope_lost", clerkOrgId: stored.orgLost.clerk_org_id, reason: stored.orgLost.reason };
    }
    response = await post(issuerUrl, stored.accessToken, "authorize", payload, request.idempotencyKey);
  }
  const claims = await session.issuer.verifyAccessToken(stored.accessToken);
  const org = { clerkOrgId: claims.clerk_org_id, orgName: claims.organization_name };
  const hold = await json(response);
  if (!response.ok) {
    const error = errorOf(hold);
    if (response.status === 402) {
      const name = hold["organization_name"];
      return {
        kind: "insufficient_credits",
        pool: String(hold["pool"]),
        clerkOrgId: org.clerkOrgId,
        orgName: typeof name === "string" ? name : org.orgName,
      };
    }
    if (response.status === 403 && error === "no_active_seat") return { kind: "no_active_seat", ...org };
    if (response.status === 403) return { kind: "forbidden", error, ...org };
    throw new UsageError(response.status, error);
  }
  // #region hold
  const holdId = String(hold["hold_id"]);
  const held = Number(hold["amount"]);

  let end: StreamEnd;
  try {
    end = await work();
  } catch (error) {
    // Cancelled or failed: release it all. If even the void cannot be sent,
    // the hold expires by itself; the stream's error is what the caller sees.
    try {
      const voided = await settle(session, "void", { hold_id: holdId });
      await voided.body?.cancel();
    } catch {
      // the hold's expiry releases it
    }
    throw error;
  }

  if (Number(end.cost) <= 0) {
    const voided = await settle(session, "void", { hold_id: holdId });
    const answer = await json(voided);
    if (!voided.ok) throw new UsageError(voided.status, errorOf(answer));
    return { kind: "released", pool: String(answer["pool"]), holdId, released: Number(answer["released"]) };
  }
  // The hold is the most this completion may take: a cost above it is charged at the hold.
  const cost = Number(end.cost) > held ? held : end.cost;
  const captured = await settle(session, "capture", { hold_id: holdId, amount: cost });
  // #endregion
  const answer = await json(captured);
  if (!captured.ok) throw new UsageError(captured.status, errorOf(answer));
  return {
    kind: "captured",
    pool: String(answer["pool"]),
    holdId,
    held,
    charged: Number(answer["amount"]),
    remaining: Number(answer["remaining"]),
    orgName: org.orgName,
  };
}

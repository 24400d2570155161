/**
 * The VS Code extension's side of the issuer: sign-in with PKCE and an
 * organization, token exchange and refresh, the org context from the claims,
 * and the metered endpoint.
 *
 * No dependencies beyond the platform: `fetch`, `URL`, `URLSearchParams`,
 * `btoa`/`atob`, `TextEncoder` and Web Crypto (`crypto.getRandomValues`,
 * `crypto.subtle`), all global in VS Code's Node (18+) and in Deno.
 *
 * Guide: docs/extension-integration.md (it shows the regions of this file).
 * docs/examples/extension/issuer_client_test.ts runs the guide's steps, in
 * the guide's order, against a real `issuer serve`.
 */

// #region config
/** Where the issuer is and who the extension is (an OAuth public client). */
export interface IssuerConfig {
  /** Base URL of the issuer, e.g. `https://issuer.example.com`. */
  issuerUrl: string;
  /** The client id registered in the issuer's `OAUTH_CLIENTS`, e.g. `vscode-extension`. */
  clientId: string;
  /** A redirect URI registered for that client, e.g. `vscode://publisher.extension/auth-callback`. */
  redirectUri: string;
}

function endpoint(config: IssuerConfig, path: string): string {
  return config.issuerUrl.replace(/\/+$/, "") + path;
}
// #endregion

// -- Sign in: PKCE (RFC 7636) with an organization ----------------------------

// #region pkce
export interface Pkce {
  /** Kept by the extension (in memory) until the code comes back. */
  verifier: string;
  /** `base64url(sha256(verifier))`, sent in the authorize URL. */
  challenge: string;
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A fresh verifier (32 random bytes → 43 characters) and its S256 challenge. */
export async function createPkce(): Promise<Pkce> {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}

/** An unguessable `state`, to match the callback to this sign-in. */
export function createState(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(16)));
}
// #endregion

// #region authorize-url
export interface AuthorizeParams {
  state: string;
  codeChallenge: string;
  /** Preselect this Clerk organization (`org_…`) on the page; omit for the user's choice. */
  clerkOrgId?: string | null;
}

/** The page to open in the browser (`vscode.env.openExternal`). */
export function authorizeUrl(config: IssuerConfig, params: AuthorizeParams): string {
  const query = new URLSearchParams({
    client_id: config.clientId,
    redirect_uri: config.redirectUri,
    state: params.state,
    code_challenge: params.codeChallenge,
    code_challenge_method: "S256",
  });
  if (params.clerkOrgId) query.set("clerk_org_id", params.clerkOrgId);
  return `${endpoint(config, "/vscode/authorize")}?${query}`;
}
// #endregion

// #region callback
/** The user denied, or the page reported an error, or the state does not match. */
export class SignInError extends Error {
  constructor(readonly error: string) {
    super(`sign-in failed: ${error}`);
    this.name = "SignInError";
  }
}

/** The `code` from the redirect (`vscode://…/auth-callback?code=…&state=…`), after checking `state`. */
export function codeFromCallback(callbackUrl: string, expectedState: string): string {
  const query = new URL(callbackUrl).searchParams;
  if (query.get("state") !== expectedState) throw new SignInError("state_mismatch");
  const error = query.get("error");
  if (error) throw new SignInError(error); // e.g. access_denied
  const code = query.get("code");
  if (!code) throw new SignInError("missing_code");
  return code;
}
// #endregion

// -- The token endpoint: code exchange and refresh -----------------------------

// #region tokens
/** Why an org was asked for and not granted (the token is personal then). */
export interface OrgScopeDenied {
  clerk_org_id: string;
  reason: "not_a_member" | "no_active_seat" | "clerk_unavailable" | string;
}

export interface TokenSet {
  accessToken: string;
  /** Rotates on every refresh: always store the new one. */
  refreshToken: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  pool: "organization" | "personal";
  orgScopeDenied: OrgScopeDenied | null;
}

/** An error answer of the issuer: `error` is the stable code (`invalid_grant`, ...). */
export class IssuerError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string | null,
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(`${status} ${error}${description ? `: ${description}` : ""}`);
    this.name = "IssuerError";
  }
}

async function errorFrom(response: Response): Promise<IssuerError> {
  let body: Record<string, unknown> = {};
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page): keep the status
  }
  const retryAfter = response.headers.get("retry-after");
  return new IssuerError(
    response.status,
    typeof body.error === "string" ? body.error : "http_error",
    typeof body.error_description === "string" ? body.error_description : null,
    retryAfter === null ? null : Number(retryAfter),
  );
}

async function tokenRequest(config: IssuerConfig, form: URLSearchParams): Promise<TokenSet> {
  form.set("client_id", config.clientId);
  const response = await fetch(endpoint(config, "/api/extension/auth/token"), {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: form,
  });
  if (!response.ok) throw await errorFrom(response);
  const body = await response.json();
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    expiresAt: Date.now() + body.expires_in * 1000,
    pool: body.pool,
    orgScopeDenied: body.org_scope_denied ?? null,
  };
}

/** Redeem the code (once) with the PKCE verifier. `clerkOrgId` here overrides the page's choice. */
export function exchangeCode(
  config: IssuerConfig,
  params: { code: string; verifier: string; clerkOrgId?: string | null },
): Promise<TokenSet> {
  const form = new URLSearchParams({
    grant_type: "authorization_code",
    code: params.code,
    code_verifier: params.verifier,
    redirect_uri: config.redirectUri,
  });
  if (params.clerkOrgId) form.set("clerk_org_id", params.clerkOrgId);
  return tokenRequest(config, form);
}

/**
 * A new access token and a NEW refresh token (the old one stops working).
 * `clerkOrgId` re-scopes the new access token; without it the org of the
 * sign-in is asked for again (membership and seat are re-checked every time).
 */
export function refreshTokens(
  config: IssuerConfig,
  refreshToken: string,
  options: { clerkOrgId?: string | null } = {},
): Promise<TokenSet> {
  const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken });
  if (options.clerkOrgId) form.set("clerk_org_id", options.clerkOrgId);
  return tokenRequest(config, form);
}

/** RFC 7009 revocation (sign-out): the refresh token and every token rotated from it. */
export async function revokeToken(config: IssuerConfig, token: string): Promise<void> {
  const response = await fetch(endpoint(config, "/api/extension/auth/revoke"), {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token, token_type_hint: "refresh_token" }),
  });
  await response.body?.cancel();
  if (!response.ok) throw new IssuerError(response.status, "http_error", null);
}
// #endregion

// -- The org context: claims of the access token -------------------------------

// #region claims
/** Every claim of every token the issuer signs (docs/architecture.md). */
export interface TokenClaims {
  sub: string;
  email: string | null;
  type: "access" | "extension_long_lived";
  iat: number;
  exp: number;
  jti: string;
  iss: string;
  aud: string;
  pool: "organization" | "personal";
  /** The eight org keys: null on a personal token. */
  clerk_org_id: string | null;
  organization_id: string | null;
  organization_name: string | null;
  stripe_customer_id: string | null;
  organization_subscription_id: string | null;
  seat_id: string | null;
  seat_role: string | null;
  org_role: string | null;
}

/**
 * The payload, DECODED ONLY (not verified): for display. The extension
 * never decides anything from it; the server verifies every request.
 */
export function readClaims(token: string): TokenClaims {
  const payload = token.split(".")[1];
  if (!payload) throw new Error("not a JWT");
  const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** What the status bar shows: whose credits this token spends. */
export function orgContextLabel(claims: TokenClaims): string {
  if (claims.pool === "organization") {
    return `${claims.organization_name ?? claims.clerk_org_id} (organization credits)`;
  }
  return "Personal credits";
}
// #endregion

// -- The metered endpoint ---------------------------------------------------------

// #region usage
export interface UsageRequest {
  /** Credits, > 0, at most 4 decimals. A decimal string keeps it exact. */
  amount: number | string;
  description: string;
  context?: Record<string, unknown>;
  /** One per logical operation (`crypto.randomUUID()`), reused on every retry of it. */
  idempotencyKey: string;
}

export type UsageResult =
  | {
    kind: "charged";
    pool: string;
    remaining: number;
    transactionId: string | null;
    replayed: boolean;
  }
  /** 402: the pool is short. Show the org's name: it is the org that is out of credits. */
  | { kind: "insufficient_credits"; pool: string; organizationName: string | null }
  /** 403: the token names an org where the user no longer has an active seat. */
  | { kind: "no_active_seat"; pool: string }
  /** 403 for another reason (`no_active_subscription`, `unknown_user`, ...). */
  | { kind: "forbidden"; error: string }
  /** 401: the token expired or was revoked: refresh, then sign in again. */
  | { kind: "unauthorized"; error: string };

export async function recordUsage(
  config: IssuerConfig,
  accessToken: string,
  request: UsageRequest,
): Promise<UsageResult> {
  const response = await fetch(endpoint(config, "/api/extension/usage"), {
    method: "POST",
    headers: {
      "Authorization": `Bearer ${accessToken}`,
      "Content-Type": "application/json",
      "Idempotency-Key": request.idempotencyKey,
    },
    body: JSON.stringify({
      amount: request.amount,
      description: request.description,
      context: request.context ?? {},
    }),
  });
  if (response.ok) {
    const body = await response.json();
    return {
      kind: "charged",
      pool: body.pool,
      remaining: body.remaining,
      transactionId: body.transaction_id,
      replayed: body.replayed,
    };
  }
  if (response.status === 402) {
    const body = await response.json();
    return {
      kind: "insufficient_credits",
      pool: body.pool,
      organizationName: body.organization_name ?? null,
    };
  }
  if (response.status === 403) {
    const body = await response.json();
    if (body.error === "no_active_seat") return { kind: "no_active_seat", pool: body.pool };
    return { kind: "forbidden", error: body.error };
  }
  if (response.status === 401) {
    const body = await response.json();
    return { kind: "unauthorized", error: body.error };
  }
  // 400 invalid_request, 409 idempotency_key_reused, 503 (retry after Retry-After), ...
  throw await errorFrom(response);
}
// #endregion

// -- Keeping tokens: SecretStorage, refresh, 401 -------------------------------------

// #region session
/** `vscode.ExtensionContext.secrets` (VS Code's SecretStorage) has this shape. */
export interface SecretStore {
  get(key: string): PromiseLike<string | undefined>;
  store(key: string, value: string): PromiseLike<void>;
  delete(key: string): PromiseLike<void>;
}

interface Stored {
  accessToken: string;
  refreshToken: string;
  expiresAt: number;
  /** The org the user chose; sent with every refresh. */
  clerkOrgId: string | null;
}

/** The refresh token is gone (revoked, reused, expired): start the sign-in again. */
export class ReauthRequired extends Error {
  constructor(cause: unknown) {
    super("sign in again", { cause });
    this.name = "ReauthRequired";
  }
}

/**
 * The session's organization scope is gone (seat suspended or revoked, or the
 * user left the org): the issuer answered `invalid_grant` with
 * `org_scope_lost` and issued nothing. Tell the user which org was lost and
 * let them sign in again, choosing personal credits or another organization.
 */
export class OrgScopeLost extends ReauthRequired {
  constructor(readonly clerkOrgId: string | null, cause: IssuerError) {
    super(cause);
    this.name = "OrgScopeLost";
  }
}

/** Tokens in SecretStorage, refreshed before they expire and after a 401. */
export class IssuerSession {
  static readonly SECRET_KEY = "issuer.tokens";

  constructor(readonly config: IssuerConfig, readonly secrets: SecretStore) {}

  async #load(): Promise<Stored | null> {
    const raw = await this.secrets.get(IssuerSession.SECRET_KEY);
    return raw ? JSON.parse(raw) : null;
  }

  async #save(tokens: TokenSet, clerkOrgId: string | null): Promise<TokenSet> {
    const stored: Stored = {
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresAt: tokens.expiresAt,
      clerkOrgId,
    };
    await this.secrets.store(IssuerSession.SECRET_KEY, JSON.stringify(stored));
    return tokens;
  }

  /** After the redirect: redeem the code, keep the tokens. */
  async signIn(
    code: string,
    verifier: string,
    clerkOrgId: string | null = null,
  ): Promise<TokenSet> {
    const tokens = await exchangeCode(this.config, { code, verifier, clerkOrgId });
    // Remember the org (asked for here, or chosen on the page) for every refresh.
    const granted = readClaims(tokens.accessToken).clerk_org_id;
    return this.#save(tokens, clerkOrgId ?? granted);
  }

  /**
   * Rotate: the new refresh token replaces the old one in storage BEFORE
   * anything else happens. `clerkOrgId` switches to another org (re-checked
   * by the issuer); omitted, the stored choice is asked for again.
   */
  async refresh(clerkOrgId?: string): Promise<TokenSet> {
    const stored = await this.#load();
    if (!stored) throw new ReauthRequired("not signed in");
    const wanted = clerkOrgId ?? stored.clerkOrgId;
    let tokens: TokenSet;
    try {
      tokens = await refreshTokens(this.config, stored.refreshToken, { clerkOrgId: wanted });
    } catch (error) {
      if (error instanceof IssuerError && error.error === "invalid_grant") {
        await this.secrets.delete(IssuerSession.SECRET_KEY);
        if (error.description?.startsWith("org_scope_lost")) {
          throw new OrgScopeLost(wanted ?? null, error);
        }
        throw new ReauthRequired(error);
      }
      throw error; // 503 and network errors: keep the tokens, try later
    }
    return this.#save(tokens, wanted);
  }

  /** A usable access token: refreshed first when it expires within a minute. */
  async accessToken(): Promise<string> {
    const stored = await this.#load();
    if (!stored) throw new ReauthRequired("not signed in");
    if (stored.expiresAt - Date.now() > 60_000) return stored.accessToken;
    return (await this.refresh()).accessToken;
  }

  /** The claims to show (decoded only). */
  async claims(): Promise<TokenClaims | null> {
    const stored = await this.#load();
    return stored ? readClaims(stored.accessToken) : null;
  }

  /** The metered call; on 401, refresh once and retry with the same idempotency key. */
  async recordUsage(request: UsageRequest): Promise<UsageResult> {
    const result = await recordUsage(this.config, await this.accessToken(), request);
    if (result.kind !== "unauthorized") return result;
    const tokens = await this.refresh(); // throws ReauthRequired when refresh is refused
    const retried = await recordUsage(this.config, tokens.accessToken, request);
    if (retried.kind === "unauthorized") throw new ReauthRequired(retried.error);
    return retried;
  }

  /** Sign out: revoke the refresh token family, forget the tokens. */
  async signOut(): Promise<void> {
    const stored = await this.#load();
    await this.secrets.delete(IssuerSession.SECRET_KEY);
    if (stored) await revokeToken(this.config, stored.refreshToken);
  }
}
// #endregion

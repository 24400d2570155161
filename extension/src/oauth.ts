/**
 * The issuer as an OAuth 2.0 authorization server, through `oauth4webapi`
 * (discovery, PKCE, code exchange, refresh, revocation, device grant) and
 * `jose` (verifying our access tokens against the published JWKS). No
 * protocol code is written here: this module only chooses the parameters.
 */
import * as oauth from "oauth4webapi";
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from "jose";

/** Where the issuer is and who the extension is (an OAuth public client). */
export interface IssuerConfig {
  /** The issuer's public base URL: its RFC 8414 `issuer` (e.g. `https://issuer.softcodes.ai`). */
  issuerUrl: string;
  /** The client id registered in the issuer's `OAUTH_CLIENTS`. */
  clientId: string;
  /** The `iss` claim of the tokens (`JWT_ISSUER`, `softcodes.ai`): not the metadata `issuer`. */
  tokenIssuer: string;
  /** The `aud` claim of the tokens (`JWT_AUDIENCE`). */
  audience: string;
}

export const DEFAULTS = {
  clientId: "vscode-extension",
  tokenIssuer: "softcodes.ai",
  audience: "vscode-extension",
} as const;

/** Every claim of our access tokens (docs/architecture.md), as verified by jose. */
export interface AccessClaims extends JWTPayload {
  sub: string;
  email: string | null;
  type: "access" | "extension_long_lived";
  pool: "organization" | "personal";
  /** The eight org keys: null on a personal token. */
  clerk_org_id: string | null;
  organization_id: string | null;
  organization_name: string | null;
  seat_role: string | null;
  org_role: string | null;
}

/** Why an org was asked for and not granted. */
export interface OrgScopeDenied {
  clerk_org_id: string;
  reason: string;
}

export interface TokenSet {
  accessToken: string;
  /** Rotates on every refresh: always store the new one. */
  refreshToken: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  orgScopeDenied: OrgScopeDenied | null;
}

/** This machine: localhost, ::1, or any 127.x.y.z address (RFC 6890 loopback). */
export function isLoopback(url: URL): boolean {
  return ["localhost", "[::1]"].includes(url.hostname) || /^127(\.\d{1,3}){3}$/.test(url.hostname);
}

/** Plain http is allowed for an issuer on this machine only (development, tests). */
export function httpOptions(url: URL): { [oauth.allowInsecureRequests]?: boolean } {
  return url.protocol === "http:" && isLoopback(url) ? { [oauth.allowInsecureRequests]: true } : {};
}

function orgScopeDenied(value: unknown): OrgScopeDenied | null {
  if (typeof value !== "object" || value === null) return null;
  const { clerk_org_id: org, reason } = value as Record<string, unknown>;
  return typeof org === "string" && typeof reason === "string"
    ? { clerk_org_id: org, reason }
    : null;
}

function tokenSet(response: oauth.TokenEndpointResponse, now = Date.now()): TokenSet {
  if (!response.refresh_token) throw new Error("the issuer returned no refresh token");
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    expiresAt: now + (response.expires_in ?? 0) * 1000,
    orgScopeDenied: orgScopeDenied(response["org_scope_denied"]),
  };
}

/** A started authorization-code sign-in: what to open, and what to check when it returns. */
export interface PendingAuthorization {
  url: URL;
  state: string;
  codeVerifier: string;
  redirectUri: string;
  clerkOrgId: string | null;
}

export interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete: string | null;
  expiresIn: number;
  interval: number;
}

/**
 * Discovery answered another issuer identifier than the configured URL
 * (oauth4webapi's OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED, RFC 8414 §3.3): most
 * often `localhost` configured while a local `issuer serve` names itself
 * `http://127.0.0.1:<port>`. The message says which URL to use (R1).
 */
export class IssuerUrlMismatch extends Error {
  constructor(readonly configured: string, readonly served: string) {
    super(
      `the issuer at ${configured} identifies itself as ${served}: ` +
        `set softcodes.issuerUrl to ${served} (or have the issuer's deployer set ISSUER_URL ` +
        `to the URL you use)`,
    );
    this.name = "IssuerUrlMismatch";
  }
}

function issuerMismatch(error: unknown, base: URL): IssuerUrlMismatch | null {
  if (!(error instanceof oauth.OperationProcessingError)) return null;
  if (error.code !== oauth.JSON_ATTRIBUTE_COMPARISON) return null;
  const cause = error.cause as { attribute?: string; body?: { issuer?: unknown } } | undefined;
  const served = cause?.body?.issuer;
  if (cause?.attribute !== "issuer" || typeof served !== "string") return null;
  return new IssuerUrlMismatch(base.href.replace(/\/$/, ""), served);
}

export class IssuerClient {
  readonly client: oauth.Client;
  readonly #base: URL;
  #metadata: Promise<oauth.AuthorizationServer> | null = null;
  #jwks: ReturnType<typeof createRemoteJWKSet> | null = null;

  constructor(readonly config: IssuerConfig) {
    this.#base = new URL(config.issuerUrl.replace(/\/+$/, ""));
    this.client = { client_id: config.clientId };
  }

  /** RFC 8414 discovery; `oauth4webapi` checks `issuer` is exactly our issuer URL. */
  metadata(): Promise<oauth.AuthorizationServer> {
    this.#metadata ??= (async () => {
      const response = await oauth.discoveryRequest(this.#base, {
        algorithm: "oauth2",
        ...httpOptions(this.#base),
      });
      try {
        return await oauth.processDiscoveryResponse(this.#base, response);
      } catch (error) {
        throw issuerMismatch(error, this.#base) ?? error;
      }
    })();
    this.#metadata.catch(() => {
      this.#metadata = null; // try again next time
    });
    return this.#metadata;
  }

  #options(as: oauth.AuthorizationServer) {
    return httpOptions(new URL(as.token_endpoint ?? as.issuer));
  }

  // #region sign-in
  /** The authorize URL (PKCE S256, a fresh `state`), and what to keep until the redirect. */
  async authorize(redirectUri: string, clerkOrgId: string | null): Promise<PendingAuthorization> {
    const as = await this.metadata();
    if (!as.authorization_endpoint) throw new Error("the issuer has no authorization_endpoint");
    const codeVerifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const url = new URL(as.authorization_endpoint);
    url.searchParams.set("response_type", "code");
    url.searchParams.set("client_id", this.client.client_id);
    url.searchParams.set("redirect_uri", redirectUri);
    url.searchParams.set("state", state);
    url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(codeVerifier));
    url.searchParams.set("code_challenge_method", "S256");
    if (clerkOrgId) url.searchParams.set("clerk_org_id", clerkOrgId);
    return { url, state, codeVerifier, redirectUri, clerkOrgId };
  }

  /**
   * The redirect came back: check it (`state`, RFC 9207 `iss`, `error`), then redeem
   * the code with the verifier. No `clerk_org_id`: the payer is the one the user
   * approved on the page, and the issuer refuses another (R5, `payer_mismatch`).
   */
  async exchange(pending: PendingAuthorization, callback: URL): Promise<TokenSet> {
    const as = await this.metadata();
    const params = oauth.validateAuthResponse(as, this.client, callback, pending.state);
    const response = await oauth.authorizationCodeGrantRequest(
      as,
      this.client,
      oauth.None(),
      params,
      pending.redirectUri,
      pending.codeVerifier,
      this.#options(as),
    );
    return tokenSet(await oauth.processAuthorizationCodeResponse(as, this.client, response));
  }
  // #endregion

  /**
   * Rotate the refresh token. The family keeps the payer approved at sign-in (R5):
   * no `clerk_org_id` is sent; another payer is a new sign-in.
   */
  async refresh(refreshToken: string): Promise<TokenSet> {
    const as = await this.metadata();
    const response = await oauth.refreshTokenGrantRequest(
      as,
      this.client,
      oauth.None(),
      refreshToken,
      this.#options(as),
    );
    return tokenSet(await oauth.processRefreshTokenResponse(as, this.client, response));
  }

  /** RFC 7009: revoke the refresh token (and every token rotated from it). */
  async revoke(refreshToken: string): Promise<void> {
    const as = await this.metadata();
    const response = await oauth.revocationRequest(as, this.client, oauth.None(), refreshToken, {
      additionalParameters: { token_type_hint: "refresh_token" },
      ...this.#options(as),
    });
    await oauth.processRevocationResponse(response);
  }

  /** RFC 8628: does this issuer offer the device grant? */
  async supportsDeviceGrant(): Promise<boolean> {
    return Boolean((await this.metadata()).device_authorization_endpoint);
  }

  /** RFC 8628 §3.1: a device code and the user code to type on the issuer's page. */
  async deviceAuthorization(clerkOrgId: string | null): Promise<DeviceAuthorization> {
    const as = await this.metadata();
    const params: Record<string, string> = clerkOrgId ? { clerk_org_id: clerkOrgId } : {};
    const response = await oauth.deviceAuthorizationRequest(
      as,
      this.client,
      oauth.None(),
      params,
      this.#options(as),
    );
    const answer = await oauth.processDeviceAuthorizationResponse(as, this.client, response);
    return {
      deviceCode: answer.device_code,
      userCode: answer.user_code,
      verificationUri: answer.verification_uri,
      verificationUriComplete: answer.verification_uri_complete ?? null,
      expiresIn: answer.expires_in,
      interval: answer.interval ?? 5,
    };
  }

  /**
   * RFC 8628 §3.4: poll until the user approves or denies, or the code expires.
   * `authorization_pending` waits `interval`, `slow_down` adds 5 seconds; any
   * other error (`access_denied`, `expired_token`) is thrown as oauth4webapi's
   * `ResponseBodyError`.
   */
  async pollDevice(
    device: DeviceAuthorization,
    options: { signal?: AbortSignal; sleep?: (ms: number) => Promise<void> } = {},
  ): Promise<TokenSet> {
    const as = await this.metadata();
    const sleep = options.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
    let interval = device.interval;
    for (;;) {
      options.signal?.throwIfAborted();
      await sleep(interval * 1000);
      options.signal?.throwIfAborted();
      const response = await oauth.deviceCodeGrantRequest(
        as,
        this.client,
        oauth.None(),
        device.deviceCode,
        this.#options(as), // no clerk_org_id: the device page chose the payer (R5)
      );
      try {
        return tokenSet(await oauth.processDeviceCodeResponse(as, this.client, response));
      } catch (error) {
        if (error instanceof oauth.ResponseBodyError) {
          if (error.error === "authorization_pending") continue;
          if (error.error === "slow_down") {
            interval += 5;
            continue;
          }
        }
        throw error;
      }
    }
  }

  // #region verify
  /**
   * Verify an access token with jose against the published JWKS: ES256 only,
   * `typ: at+jwt`, our `iss` (`tokenIssuer`, or the metadata's issuer) and
   * `aud`, not expired. Business decisions (which org pays) take
   * `clerk_org_id` from HERE, never from an unverified decode.
   */
  async verifyAccessToken(token: string): Promise<AccessClaims> {
    const as = await this.metadata();
    if (!as.jwks_uri) throw new Error("the issuer publishes no jwks_uri");
    this.#jwks ??= createRemoteJWKSet(new URL(as.jwks_uri));
    const { payload } = await jwtVerify<AccessClaims>(token, this.#jwks, {
      algorithms: ["ES256"],
      typ: "at+jwt",
      // The seed's name (default), or the discovered issuer under the strict
      // RFC 9068 profile (JWT_ISSUER = ISSUER_URL, docs/operations.md): §4's
      // check, with that same server's JWKS.
      issuer: [this.config.tokenIssuer, as.issuer],
      audience: this.config.audience,
      requiredClaims: ["sub", "exp", "iat", "jti"],
    });
    if (payload.type !== "access") throw new Error("not an access token");
    if (payload.client_id !== undefined && payload.client_id !== this.client.client_id) {
      throw new Error("the access token was issued to another client");
    }
    return payload;
  }
  // #endregion
}

/**
 * The signed-in session: tokens in SecretStorage, refreshed before expiry,
 * the organization the user chose, and the sign-in state machine
 *
 *   signed-out ──begin──▶ signing-in ──complete──▶ signed-in ──signOut──▶ signed-out
 *        ▲                    │ cancel / error          │ refresh refused (invalid_grant)
 *        └────────────────────┴─────────────────────────┘
 *
 * plus `orgLost` inside signed-in: the org the user chose can no longer be
 * granted (seat suspended, membership gone). The payer never changes silently
 * (SECURITY L2): until the user picks another org or personal credits, usage
 * is refused on the client too.
 */
import * as oauth from "oauth4webapi";
import {
  type AccessClaims,
  type IssuerClient,
  type OrgScopeDenied,
  type PendingAuthorization,
  type TokenSet,
} from "./oauth.js";

/** `vscode.ExtensionContext.secrets` (VS Code's SecretStorage) has this shape. */
export interface SecretStore {
  get(key: string): PromiseLike<string | undefined>;
  store(key: string, value: string): PromiseLike<void>;
  delete(key: string): PromiseLike<void>;
}

export interface Stored {
  accessToken: string;
  refreshToken: string;
  expiresAt: number;
  /** The org the user chose (sent with every refresh), or null for personal credits. */
  clerkOrgId: string | null;
  /** The chosen org could not be granted on the last refresh (L2). */
  orgLost: OrgScopeDenied | null;
}

export type SessionState = "signed-out" | "signing-in" | "signed-in";

/** The refresh token is gone (revoked, reused, expired): sign in again. */
export class ReauthRequired extends Error {
  constructor(readonly reason: string) {
    super(`sign in again (${reason})`);
    this.name = "ReauthRequired";
  }
}

/** The sign-in came back with an error (`access_denied`, a state mismatch, ...). */
export class SignInFailed extends Error {
  constructor(readonly error: string, options?: { cause?: unknown }) {
    super(`sign-in failed: ${error}`, options);
    this.name = "SignInFailed";
  }
}

/** What the user sees after a sign-in, a refresh or a switch. */
export interface SessionView {
  claims: AccessClaims;
  /** The org asked for and why it was not granted (the token is personal then). */
  orgScopeDenied: OrgScopeDenied | null;
  orgLost: OrgScopeDenied | null;
}

/** Refresh this long before the access token expires. */
export const REFRESH_MARGIN_MS = 60_000;

export class Session {
  static readonly SECRET_KEY = "softcodes.tokens";
  #state: SessionState = "signed-out";
  #pending: PendingAuthorization | null = null;
  #refreshing: Promise<Stored> | null = null;
  readonly #listeners = new Set<() => void>();

  constructor(
    readonly issuer: IssuerClient,
    readonly secrets: SecretStore,
    readonly now: () => number = Date.now,
  ) {}

  get state(): SessionState {
    return this.#state;
  }

  onDidChange(listener: () => void): { dispose(): void } {
    this.#listeners.add(listener);
    return { dispose: () => this.#listeners.delete(listener) };
  }

  #changed(state: SessionState): void {
    this.#state = state;
    for (const listener of this.#listeners) listener();
  }

  async load(): Promise<Stored | null> {
    const raw = await this.secrets.get(Session.SECRET_KEY);
    if (!raw) return null;
    try {
      return JSON.parse(raw) as Stored;
    } catch {
      await this.secrets.delete(Session.SECRET_KEY);
      return null;
    }
  }

  /** At activation: signed in when SecretStorage holds tokens. */
  async restore(): Promise<SessionState> {
    this.#changed((await this.load()) ? "signed-in" : "signed-out");
    return this.#state;
  }

  async #save(tokens: TokenSet, stored: Omit<Stored, keyof TokenSet>): Promise<Stored> {
    const value: Stored = {
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresAt: tokens.expiresAt,
      ...stored,
    };
    await this.secrets.store(Session.SECRET_KEY, JSON.stringify(value));
    return value;
  }

  async #view(stored: Stored, denied: OrgScopeDenied | null): Promise<SessionView> {
    const claims = await this.issuer.verifyAccessToken(stored.accessToken);
    return { claims, orgScopeDenied: denied, orgLost: stored.orgLost };
  }

  /** Step 1: the URL to open in the browser. A second call replaces the first sign-in. */
  async beginSignIn(redirectUri: string, clerkOrgId: string | null): Promise<URL> {
    this.#pending = await this.issuer.authorize(redirectUri, clerkOrgId);
    this.#changed("signing-in");
    return this.#pending.url;
  }

  /** Forget the sign-in in progress; the state is what SecretStorage holds again. */
  async cancelSignIn(): Promise<void> {
    if (this.#pending === null) return;
    this.#pending = null;
    await this.restore();
  }

  /** Step 2: the redirect arrived (URI handler or loopback): check it, redeem the code. */
  async completeSignIn(callback: URL): Promise<SessionView> {
    const pending = this.#pending;
    if (!pending) throw new SignInFailed("no_sign_in_in_progress");
    let tokens: TokenSet;
    try {
      tokens = await this.issuer.exchange(pending, callback);
    } catch (error) {
      if (error instanceof oauth.AuthorizationResponseError) {
        await this.cancelSignIn();
        throw new SignInFailed(error.error, { cause: error });
      }
      await this.cancelSignIn();
      if (error instanceof oauth.OperationProcessingError) {
        // A state mismatch or an `iss` from another server: not the redirect of this sign-in.
        throw new SignInFailed("invalid_callback", { cause: error });
      }
      throw error;
    }
    this.#pending = null;
    return this.#finish(tokens, pending.clerkOrgId);
  }

  /** The device grant's tokens (RFC 8628): the same end as a browser sign-in. */
  async completeDeviceSignIn(tokens: TokenSet, clerkOrgId: string | null): Promise<SessionView> {
    return this.#finish(tokens, clerkOrgId);
  }

  async #finish(tokens: TokenSet, asked: string | null): Promise<SessionView> {
    // The org the user ends up with (asked here or chosen on the page), from the VERIFIED token.
    const claims = await this.issuer.verifyAccessToken(tokens.accessToken);
    const stored = await this.#save(tokens, { clerkOrgId: claims.clerk_org_id, orgLost: null });
    this.#changed("signed-in");
    const denied = asked && !claims.clerk_org_id ? tokens.orgScopeDenied : null;
    return { claims, orgScopeDenied: denied, orgLost: stored.orgLost };
  }

  /**
   * Rotate the tokens (single flight: concurrent callers share one refresh, so one
   * window never presents a rotated token twice). The new refresh token is stored
   * before anything else. The family keeps its payer (R5).
   */
  async refresh(): Promise<Stored> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  // #region refresh
  async #refresh(): Promise<Stored> {
    const stored = await this.load();
    if (!stored) throw new ReauthRequired("not_signed_in");
    const wanted = stored.clerkOrgId;
    let tokens: TokenSet;
    try {
      tokens = await this.issuer.refresh(stored.refreshToken);
    } catch (error) {
      if (error instanceof oauth.ResponseBodyError && error.error === "invalid_grant") {
        if (wanted && /org_scope_lost/.test(error.error_description ?? "")) {
          // L2: nothing issued; the family stays, the user must choose who pays.
          const lost = { clerk_org_id: wanted, reason: "org_scope_lost" };
          return this.#store({ ...stored, orgLost: lost });
        }
        await this.secrets.delete(Session.SECRET_KEY);
        this.#changed("signed-out");
        throw new ReauthRequired(error.error_description ?? error.error);
      }
      throw error; // 503, network: keep the tokens, try later
    }
    // Asked for an org and got personal credits: the org is lost; say so, do not pay silently.
    const lost = wanted && tokens.orgScopeDenied ? tokens.orgScopeDenied : null;
    const value = await this.#save(tokens, { clerkOrgId: wanted, orgLost: lost });
    this.#changed("signed-in");
    return value;
  }
  // #endregion

  /** A usable access token: refreshed first when it expires within REFRESH_MARGIN_MS. */
  async accessToken(): Promise<Stored> {
    const stored = await this.load();
    if (!stored) throw new ReauthRequired("not_signed_in");
    if (stored.expiresAt - this.now() > REFRESH_MARGIN_MS) return stored;
    return this.refresh();
  }

  /** Milliseconds until the next refresh is due (for a timer), or null when signed out. */
  async msUntilRefresh(): Promise<number | null> {
    const stored = await this.load();
    if (!stored) return null;
    return Math.max(0, stored.expiresAt - REFRESH_MARGIN_MS - this.now());
  }

  /** The verified claims of the current access token, for the status bar and business calls. */
  async view(): Promise<SessionView | null> {
    const stored = await this.load();
    if (!stored) return null;
    try {
      return await this.#view(stored, null);
    } catch {
      // Expired or rotated key: refresh once, then verify again.
      const refreshed = await this.refresh();
      return this.#view(refreshed, null);
    }
  }

  async #store(value: Stored): Promise<Stored> {
    await this.secrets.store(Session.SECRET_KEY, JSON.stringify(value));
    this.#changed("signed-in");
    return value;
  }

  /**
   * The user chose personal credits. When the current token is already personal
   * (the issuer downgraded it), that is only a change of the stored choice; an org
   * token cannot be refreshed into a personal one, so then a new sign-in is needed:
   * answers false.
   */
  async usePersonalCredits(): Promise<boolean> {
    const stored = await this.load();
    if (!stored) return false;
    const claims = await this.issuer.verifyAccessToken(stored.accessToken).catch(() => null);
    if (!claims || claims.pool !== "personal") return false;
    await this.#store({ ...stored, clerkOrgId: null, orgLost: null });
    return true;
  }

  /** Sign out: forget the tokens, then revoke the refresh token family (RFC 7009). */
  async signOut(): Promise<void> {
    const stored = await this.load();
    this.#pending = null;
    await this.secrets.delete(Session.SECRET_KEY);
    this.#changed("signed-out");
    if (stored) await this.issuer.revoke(stored.refreshToken);
  }
}

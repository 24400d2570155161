/**
 * docs/extension-integration.md, step by step and in its order, against a
 * real `issuer serve` (started by py/tests/test_docs_examples.py, which also
 * seeds the database and sets these variables):
 *
 *   ISSUER_URL, CLIENT_ID, REDIRECT_URI   the issuer and the registered client
 *   CLERK_SESSION_TOKEN                   Alice's Clerk session (what the browser page has)
 *   ORG_ID, ORG_NAME                      an org where Alice has an active seat (pool: 10)
 *   SUSPENDED_ORG_ID                      an org where Alice's seat is suspended
 *   BOB_ACCESS_TOKEN, BOB_REFRESH_TOKEN   Bob's org tokens, minted before his seat was suspended
 *   EXPIRED_ACCESS_TOKEN                  an access token of Alice's that has expired
 *
 * The authorization page (GET /vscode/authorize) is a browser page. Here the
 * user's "Approve" is the request that page makes:
 * POST /api/auth/complete-vscode-auth with the Clerk session.
 */

import {
  authorizeUrl,
  codeFromCallback,
  createPkce,
  createState,
  type IssuerConfig,
  IssuerError,
  IssuerSession,
  orgContextLabel,
  OrgScopeLost,
  readClaims,
  ReauthRequired,
  recordUsage,
  refreshTokens,
  revokeToken,
  type SecretStore,
  SignInError,
  type TokenSet,
} from "./issuer_client.ts";

function env(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set: run py/tests/test_docs_examples.py`);
  return value;
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

function assertEquals<T>(actual: T, expected: T, message = ""): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message} expected ${e}, got ${a}`);
}

async function assertRejects(promise: Promise<unknown>, check: (e: unknown) => boolean) {
  try {
    await promise;
  } catch (error) {
    assert(check(error), `unexpected error ${error}`);
    return;
  }
  throw new Error("expected a rejection");
}

/** VS Code's SecretStorage, in memory. */
class MemorySecrets implements SecretStore {
  readonly values = new Map<string, string>();
  get(key: string): Promise<string | undefined> {
    return Promise.resolve(this.values.get(key));
  }
  store(key: string, value: string): Promise<void> {
    this.values.set(key, value);
    return Promise.resolve();
  }
  delete(key: string): Promise<void> {
    this.values.delete(key);
    return Promise.resolve();
  }
}

const config: IssuerConfig = {
  issuerUrl: env("ISSUER_URL"),
  clientId: env("CLIENT_ID"),
  redirectUri: env("REDIRECT_URI"),
};
const ORG_ID = env("ORG_ID");
const ORG_NAME = env("ORG_NAME");

/**
 * What the browser page does when the signed-in user approves: ask the
 * issuer for a code for the parameters of the authorize URL, then redirect.
 */
async function approveInBrowser(url: string): Promise<string> {
  const query = new URL(url).searchParams;
  const response = await fetch(`${config.issuerUrl}/api/auth/complete-vscode-auth`, {
    method: "POST",
    headers: {
      "Authorization": `Bearer ${env("CLERK_SESSION_TOKEN")}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({
      client_id: query.get("client_id"),
      redirect_uri: query.get("redirect_uri"),
      state: query.get("state"),
      code_challenge: query.get("code_challenge"),
      code_challenge_method: query.get("code_challenge_method"),
      clerk_org_id: query.get("clerk_org_id"),
    }),
  });
  const body = await response.json();
  assertEquals(response.status, 200, JSON.stringify(body));
  return body.redirect_to; // the page redirects the browser here
}

/** Steps 1a-1c: a complete sign-in, as the guide shows it. */
async function signIn(session: IssuerSession, clerkOrgId: string | null): Promise<TokenSet> {
  const pkce = await createPkce();
  const state = createState();
  const url = authorizeUrl(config, { state, codeChallenge: pkce.challenge, clerkOrgId });
  const callback = await approveInBrowser(url);
  return session.signIn(codeFromCallback(callback, state), pkce.verifier, clerkOrgId);
}

function usage(amount: number | string, key = crypto.randomUUID()) {
  return { amount, description: "docs example", idempotencyKey: key };
}

Deno.test("docs/extension-integration.md, in order", async (t) => {
  const secrets = new MemorySecrets();
  const session = new IssuerSession(config, secrets);

  await t.step("0. the configuration matches the issuer's metadata", async () => {
    const response = await fetch(`${config.issuerUrl}/.well-known/oauth-authorization-server`);
    const metadata = await response.json();
    assertEquals(metadata.code_challenge_methods_supported, ["S256"]);
    assertEquals(metadata.token_endpoint, `${config.issuerUrl}/api/extension/auth/token`);
    const url = authorizeUrl(config, { state: "s", codeChallenge: "c" });
    assert(url.startsWith(`${metadata.authorization_endpoint}?`), url);
  });

  const pkce = await createPkce();
  const state = createState();
  let url = "";

  await t.step("1a. PKCE and the authorize URL with the organization", async () => {
    assert(/^[A-Za-z0-9_-]{43}$/.test(pkce.verifier), "verifier: 43 base64url characters");
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(pkce.verifier));
    const expected = btoa(String.fromCharCode(...new Uint8Array(digest)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    assertEquals(pkce.challenge, expected, "S256 challenge");
    url = authorizeUrl(config, { state, codeChallenge: pkce.challenge, clerkOrgId: ORG_ID });
    const query = new URL(url).searchParams;
    assertEquals(new URL(url).pathname, "/vscode/authorize");
    assertEquals(query.get("client_id"), config.clientId);
    assertEquals(query.get("redirect_uri"), config.redirectUri);
    assertEquals(query.get("code_challenge_method"), "S256");
    assertEquals(query.get("clerk_org_id"), ORG_ID);
    assertEquals(query.get("state"), state);
  });

  let code = "";
  await t.step("1b. the user approves; the callback carries code and state", async () => {
    const callback = await approveInBrowser(url);
    code = codeFromCallback(callback, state);
    assert(code.length > 20, "a code");
    try {
      codeFromCallback(callback, "another state");
      throw new Error("a foreign state must be refused");
    } catch (error) {
      assert(error instanceof SignInError && error.error === "state_mismatch", `${error}`);
    }
    const denied = `${config.redirectUri}?error=access_denied&state=${state}`;
    try {
      codeFromCallback(denied, state);
      throw new Error("a denial must be reported");
    } catch (error) {
      assert(error instanceof SignInError && error.error === "access_denied", `${error}`);
    }
  });

  await t.step("1c. exchange the code at the token endpoint", async () => {
    const tokens = await session.signIn(code, pkce.verifier, ORG_ID);
    assertEquals(tokens.pool, "organization");
    assertEquals(tokens.orgScopeDenied, null);
  });

  await t.step("2. the tokens live in SecretStorage", async () => {
    const stored = JSON.parse(secrets.values.get(IssuerSession.SECRET_KEY) ?? "{}");
    assert(stored.refreshToken.startsWith("rt_"), "an opaque refresh token");
    assertEquals(stored.clerkOrgId, ORG_ID, "the chosen org, for every refresh");
    assertEquals(await session.accessToken(), stored.accessToken, "fresh: no refresh needed");
  });

  await t.step("3a. refresh rotates: store the new refresh token", async () => {
    const before = JSON.parse(secrets.values.get(IssuerSession.SECRET_KEY) ?? "{}");
    const tokens = await session.refresh();
    assert(tokens.refreshToken !== before.refreshToken, "a new refresh token");
    assertEquals(tokens.pool, "organization", "the org is asked for again and re-checked");
    const after = JSON.parse(secrets.values.get(IssuerSession.SECRET_KEY) ?? "{}");
    assertEquals(after.refreshToken, tokens.refreshToken);
  });

  await t.step("3b. reusing an old refresh token revokes the whole family", async () => {
    const other = new IssuerSession(config, new MemorySecrets());
    const first = await signIn(other, ORG_ID);
    const second = await refreshTokens(config, first.refreshToken);
    await assertRejects(
      refreshTokens(config, first.refreshToken),
      (e) => e instanceof IssuerError && e.error === "invalid_grant",
    );
    await assertRejects( // the newest token of the family is revoked too
      refreshTokens(config, second.refreshToken),
      (e) => e instanceof IssuerError && e.error === "invalid_grant",
    );
  });

  await t.step("3c. an org without an active seat: a personal token, and why", async () => {
    const other = new IssuerSession(config, new MemorySecrets());
    const tokens = await signIn(other, env("SUSPENDED_ORG_ID"));
    assertEquals(tokens.pool, "personal");
    assertEquals(tokens.orgScopeDenied, {
      clerk_org_id: env("SUSPENDED_ORG_ID"),
      reason: "no_active_seat",
    });
  });

  await t.step("3d. re-scope after sign-in: clerk_org_id on the refresh grant", async () => {
    const other = new IssuerSession(config, new MemorySecrets());
    const personal = await signIn(other, null);
    assertEquals(personal.pool, "personal");
    const scoped = await other.refresh(ORG_ID);
    assertEquals(scoped.pool, "organization");
    assertEquals(readClaims(scoped.accessToken).clerk_org_id, ORG_ID);
    assertEquals((await other.refresh()).pool, "organization", "the choice is kept");
  });

  await t.step("4. the org context from the claims (decoded, for display)", async () => {
    const claims = await session.claims();
    assert(claims !== null, "signed in");
    assertEquals(claims.pool, "organization");
    assertEquals(claims.clerk_org_id, ORG_ID);
    assertEquals(claims.organization_name, ORG_NAME);
    assertEquals(orgContextLabel(claims), `${ORG_NAME} (organization credits)`);
    assertEquals(claims.type, "access");
    const personal = { ...claims, pool: "personal" as const, organization_name: null };
    assertEquals(orgContextLabel(personal), "Personal credits");
  });

  await t.step("5a. the metered endpoint, with an idempotency key", async () => {
    const key = crypto.randomUUID();
    const first = await session.recordUsage(usage(2, key));
    assertEquals(first.kind, "charged");
    assert(first.kind === "charged", "charged");
    assertEquals([first.pool, first.remaining, first.replayed], ["organization", 8, false]);
    const retry = await session.recordUsage(usage(2, key)); // e.g. after a timeout
    assert(retry.kind === "charged", "charged");
    assertEquals([retry.remaining, retry.replayed, retry.transactionId], [
      8,
      true,
      first.transactionId,
    ]);
    await assertRejects( // the same key for another request is a client bug: 409
      session.recordUsage(usage(3, key)),
      (e) => e instanceof IssuerError && e.status === 409 && e.error === "idempotency_key_reused",
    );
  });

  await t.step("5b. 402: the organization is out of credits", async () => {
    const result = await session.recordUsage(usage(50));
    assertEquals(result, {
      kind: "insufficient_credits",
      pool: "organization",
      organizationName: ORG_NAME,
    });
  });

  await t.step(
    "5c. 403 no_active_seat, then org_scope_lost: sign in again and choose",
    async () => {
      const bobSecrets = new MemorySecrets();
      const bob = new IssuerSession(config, bobSecrets);
      await bob.secrets.store(
        IssuerSession.SECRET_KEY,
        JSON.stringify({
          accessToken: env("BOB_ACCESS_TOKEN"),
          refreshToken: env("BOB_REFRESH_TOKEN"),
          expiresAt: Date.now() + 3_600_000,
          clerkOrgId: ORG_ID,
        }),
      );
      const refused = await bob.recordUsage(usage(1));
      assertEquals(refused, { kind: "no_active_seat", pool: "organization" });
      // A refresh never switches the payer silently (L2): nothing is issued, the
      // session ends, and the user signs in again choosing personal or another org.
      await assertRejects(
        bob.refresh(),
        (e) => e instanceof OrgScopeLost && e.clerkOrgId === ORG_ID,
      );
      assertEquals(bobSecrets.values.size, 0);
    },
  );

  await t.step("5d. 401: refresh, retry; a refused refresh means sign in again", async () => {
    const stored = JSON.parse(secrets.values.get(IssuerSession.SECRET_KEY) ?? "{}");
    const expired = { ...stored, accessToken: env("EXPIRED_ACCESS_TOKEN") };
    await secrets.store(IssuerSession.SECRET_KEY, JSON.stringify(expired));
    const direct = await recordUsage(config, expired.accessToken, usage(1));
    assertEquals(direct, { kind: "unauthorized", error: "invalid_token" });
    const retried = await session.recordUsage(usage(1)); // refreshed behind the scenes
    assert(retried.kind === "charged", JSON.stringify(retried));

    // The refresh token is revoked (signed out elsewhere): the 401 now ends the session.
    const current = JSON.parse(secrets.values.get(IssuerSession.SECRET_KEY) ?? "{}");
    await revokeToken(config, current.refreshToken);
    await secrets.store(
      IssuerSession.SECRET_KEY,
      JSON.stringify({ ...current, accessToken: env("EXPIRED_ACCESS_TOKEN") }),
    );
    await assertRejects(session.recordUsage(usage(1)), (e) => e instanceof ReauthRequired);
    assertEquals(secrets.values.size, 0);
  });

  await t.step("6. sign out revokes the refresh token", async () => {
    await signIn(session, ORG_ID);
    const stored = JSON.parse(secrets.values.get(IssuerSession.SECRET_KEY) ?? "{}");
    await session.signOut();
    assertEquals(secrets.values.size, 0);
    await assertRejects(
      refreshTokens(config, stored.refreshToken),
      (e) => e instanceof IssuerError && e.error === "invalid_grant",
    );
  });
});

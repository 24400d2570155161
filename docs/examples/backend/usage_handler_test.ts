/**
 * The Node/Deno backend of docs/backend-integration.md, against the real
 * issuer (`issuer serve`, for its JWKS and sign-in) and the database through
 * PostgREST (py/tests/support/postgrest_double.py in the test suite). Run by
 * py/tests/test_docs_examples.py, which seeds the rows and sets:
 *
 *   SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY      PostgREST and its service role key
 *   ISSUER_URL, JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE, CLIENT_ID, REDIRECT_URI
 *   CLERK_SESSION_TOKEN                          Carol's Clerk session
 *   ORG_ID (pool 10), POOR_ORG_ID, POOR_ORG_NAME (pool 1): Carol has active seats in both
 *   LONG_LIVED_TOKEN, REVOKED_LONG_LIVED_TOKEN   Carol's personal long-lived tokens (HS256)
 *   SEATLESS_ACCESS_TOKEN                        an org token whose seat was suspended since
 */

import {
  createTokenVerifier,
  type IssuerClaims,
  serviceClient,
  usageHandler,
} from "./usage_handler.ts";

function env(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set: run py/tests/test_docs_examples.py`);
  return value;
}

function assertEquals(actual: unknown, expected: unknown, message = ""): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message} expected ${e}, got ${a}`);
}

const issuer = {
  issuerUrl: env("ISSUER_URL"),
  clientId: env("CLIENT_ID"),
  redirectUri: env("REDIRECT_URI"),
};
const supabase = serviceClient(env("SUPABASE_URL"), env("SUPABASE_SERVICE_ROLE_KEY"));
const verify = createTokenVerifier({
  issuer: env("JWT_ISSUER"),
  audience: env("JWT_AUDIENCE"),
  jwksUrl: `${issuer.issuerUrl}/.well-known/jwks.json`,
  hs256Secret: env("JWT_SECRET"),
  supabase,
});
const handler = usageHandler({ verify, supabase });

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

/** A PKCE pair (S256), as the extension makes one for each sign-in. */
async function createPkce(): Promise<{ verifier: string; challenge: string }> {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}

/** An org-scoped access token from the issuer (ES256, verified through its JWKS). */
async function accessToken(clerkOrgId: string): Promise<string> {
  const pkce = await createPkce();
  const response = await fetch(`${issuer.issuerUrl}/api/auth/complete-vscode-auth`, {
    method: "POST",
    headers: {
      "Authorization": `Bearer ${env("CLERK_SESSION_TOKEN")}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({
      client_id: issuer.clientId,
      redirect_uri: issuer.redirectUri,
      state: "backend-test",
      code_challenge: pkce.challenge,
      code_challenge_method: "S256",
      clerk_org_id: clerkOrgId,
    }),
  });
  const { code } = await response.json();
  const exchanged = await fetch(`${issuer.issuerUrl}/api/extension/auth/token`, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      code_verifier: pkce.verifier,
      redirect_uri: issuer.redirectUri,
      client_id: issuer.clientId,
    }),
  });
  const tokens = await exchanged.json();
  assertEquals(tokens.pool, "organization");
  return tokens.access_token;
}

async function post(
  token: string | null,
  body: unknown,
  headers: Record<string, string> = {},
  target: (request: Request) => Promise<Response> = handler,
): Promise<[number, Record<string, unknown>, Headers]> {
  const request = new Request("http://backend.test/summaries", {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      ...(token ? { "Authorization": `Bearer ${token}` } : {}),
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const response = await target(request);
  return [response.status, await response.json(), response.headers];
}

Deno.test("an org token spends the org's pool; the body cannot name another org", async () => {
  const token = await accessToken(env("ORG_ID"));
  const claims: IssuerClaims = await verify(token);
  assertEquals([claims.pool, claims.clerk_org_id], ["organization", env("ORG_ID")]);
  const [status, body] = await post(token, { text: "hello", clerk_org_id: env("POOR_ORG_ID") });
  assertEquals([status, body.pool, body.remaining], [200, "organization", 8.5]);
});

Deno.test("an Idempotency-Key charges once; reused for another request it is 409", async () => {
  const token = await accessToken(env("ORG_ID"));
  const key = { "Idempotency-Key": crypto.randomUUID() };
  const [first, charged] = await post(token, { text: "once" }, key);
  const [again, replayed] = await post(token, { text: "once" }, key);
  assertEquals([first, charged.replayed, again, replayed.replayed], [200, false, 200, true]);
  assertEquals(replayed.remaining, charged.remaining);
  const [conflict, error] = await post(token, { text: "another text" }, key);
  assertEquals([conflict, error.error], [409, "idempotency_key_reused"]);
});

Deno.test("402 names the organization that is out of credits", async () => {
  const [status, body] = await post(await accessToken(env("POOR_ORG_ID")), { text: "x" });
  assertEquals([status, body], [402, {
    error: "insufficient_credits",
    pool: "organization",
    organization_name: env("POOR_ORG_NAME"),
  }]);
});

Deno.test("403 when the seat is no longer active, although the token is valid", async () => {
  const [status, body] = await post(env("SEATLESS_ACCESS_TOKEN"), { text: "x" });
  assertEquals([status, body], [403, { error: "no_active_seat", pool: "organization" }]);
});

Deno.test("long-lived tokens (HS256) are checked for revocation", async () => {
  const [ok, charged] = await post(env("LONG_LIVED_TOKEN"), { text: "x" });
  assertEquals([ok, charged.pool], [200, "personal"]);
  const [revoked, error, headers] = await post(env("REVOKED_LONG_LIVED_TOKEN"), { text: "x" });
  assertEquals([revoked, error.error], [401, "invalid_token"]);
  assertEquals(headers.get("www-authenticate"), 'Bearer error="invalid_token"');
  const [missing] = await post(null, { text: "x" });
  const [forged] = await post(env("LONG_LIVED_TOKEN").slice(0, -4) + "AAAA", { text: "x" });
  assertEquals([missing, forged], [401, 401]);
});

Deno.test("input the database refuses (SQLSTATE 22023) is 400", async () => {
  const [status, body] = await post(env("LONG_LIVED_TOKEN"), { text: "x" }, {
    "Idempotency-Key": "k".repeat(201),
  });
  assertEquals([status, body.error], [400, "invalid_request"]);
});

Deno.test("an unreachable database is 503 with Retry-After", async () => {
  const down = serviceClient("http://127.0.0.1:9", "unused");
  const target = usageHandler({ verify, supabase: down });
  const [status, body, headers] = await post(env("LONG_LIVED_TOKEN"), { text: "x" }, {}, target);
  assertEquals([status, body.error, headers.get("retry-after")], [
    503,
    "database_unavailable",
    "1",
  ]);
});

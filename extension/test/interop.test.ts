/**
 * Interop: the independent libraries exactly as any client would use them,
 * against a real `issuer serve` (py/tests/test_extension.py starts and seeds
 * it). oauth4webapi drives discovery, the authorization code grant with PKCE
 * and the RFC 9207 `iss` check, refresh, revocation, the device grant, and
 * RFC 9068 validation; jose verifies every token type against the published
 * JWKS (ES256) and refuses HS256, `none` and kid tricks.
 */
import assert from "node:assert/strict";
import { describe, it, before } from "node:test";
import * as oauth from "oauth4webapi";
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  UnsecuredJWT,
  decodeJwt,
} from "jose";
import { loopbackRedirect } from "../src/loopback.js";
import { approveDevice, arrange, browse, env, issuerClient } from "./harness.js";

const ISSUER = new URL(env("ISSUER_URL"));
const CLIENT: oauth.Client = { client_id: env("CLIENT_ID") };
const JWT_ISSUER = env("JWT_ISSUER");
const AUDIENCE = env("JWT_AUDIENCE");
const ACME = env("ACME");
const INSECURE = { [oauth.allowInsecureRequests]: true } as const; // http on loopback

let as: oauth.AuthorizationServer;
let session = "";
let jwks: ReturnType<typeof createRemoteJWKSet>;

/** One full browser sign-in with oauth4webapi; answers the token response. */
async function signIn(clerkOrgId: string | null): Promise<oauth.TokenEndpointResponse> {
  const redirect = await loopbackRedirect();
  try {
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const url = new URL(as.authorization_endpoint!);
    url.searchParams.set("response_type", "code");
    url.searchParams.set("client_id", CLIENT.client_id);
    url.searchParams.set("redirect_uri", redirect.redirectUri);
    url.searchParams.set("state", state);
    url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(verifier));
    url.searchParams.set("code_challenge_method", "S256");
    if (clerkOrgId) url.searchParams.set("clerk_org_id", clerkOrgId);
    const callback = await browse(url, session, { approve: clerkOrgId });
    const params = oauth.validateAuthResponse(as, CLIENT, callback, state);
    const response = await oauth.authorizationCodeGrantRequest(
      as,
      CLIENT,
      oauth.None(),
      params,
      redirect.redirectUri,
      verifier,
      { additionalParameters: clerkOrgId ? { clerk_org_id: clerkOrgId } : {}, ...INSECURE },
    );
    return await oauth.processAuthorizationCodeResponse(as, CLIENT, response);
  } finally {
    redirect.dispose();
  }
}

async function refresh(token: string): Promise<oauth.TokenEndpointResponse> {
  const response = await oauth.refreshTokenGrantRequest(as, CLIENT, oauth.None(), token, INSECURE);
  return oauth.processRefreshTokenResponse(as, CLIENT, response);
}

function isOAuthError(code: string) {
  return (error: unknown) => {
    assert.ok(error instanceof oauth.ResponseBodyError, String(error));
    assert.equal(error.error, code);
    return true;
  };
}

/** jose as a resource server verifies our access tokens. */
function verifyAccess(token: string) {
  return jwtVerify(token, jwks, {
    algorithms: ["ES256"],
    typ: "at+jwt",
    issuer: JWT_ISSUER,
    audience: AUDIENCE,
  });
}

describe("interop: oauth4webapi and jose against issuer serve", () => {
  before(async () => {
    session = (await arrange<{ token: string }>("session", { user: env("ALICE") })).token;
  });

  it("discovery: oauth4webapi accepts the RFC 8414 metadata (issuer = where it is served)", async () => {
    const response = await oauth.discoveryRequest(ISSUER, { algorithm: "oauth2", ...INSECURE });
    as = await oauth.processDiscoveryResponse(ISSUER, response);
    assert.equal(as.issuer, ISSUER.href.replace(/\/$/, ""));
    assert.deepEqual(as.code_challenge_methods_supported, ["S256"]);
    assert.equal(as.authorization_response_iss_parameter_supported, true);
    assert.ok(as.device_authorization_endpoint);
    assert.ok(as.revocation_endpoint);
    jwks = createRemoteJWKSet(new URL(as.jwks_uri!));
  });

  let tokens: oauth.TokenEndpointResponse;

  it("authorization code + PKCE + RFC 9207 iss: an org-scoped token set", async () => {
    tokens = await signIn(ACME);
    assert.equal(tokens.token_type, "bearer");
    assert.ok(tokens.refresh_token);
    assert.equal(tokens["pool"], "organization");
    assert.ok(tokens.expires_in && tokens.expires_in > 0);
  });

  it("the authorization response is refused with another server's iss, or none, or another state", () => {
    const good = new URLSearchParams({ code: "x", state: "s", iss: as.issuer });
    assert.ok(oauth.validateAuthResponse(as, CLIENT, good, "s"));
    for (const bad of [
      new URLSearchParams({ code: "x", state: "s", iss: "https://evil.example" }),
      new URLSearchParams({ code: "x", state: "s" }),
      new URLSearchParams({ code: "x", state: "other", iss: as.issuer }),
    ]) {
      assert.throws(() => oauth.validateAuthResponse(as, CLIENT, bad, "s"), oauth.OperationProcessingError);
    }
  });

  it("jose verifies the access token against the JWKS: ES256, typ at+jwt, a published kid", async () => {
    const { payload, protectedHeader } = await verifyAccess(tokens.access_token);
    assert.equal(protectedHeader.alg, "ES256");
    assert.equal(protectedHeader.typ, "at+jwt");
    const published = (await (await fetch(as.jwks_uri!)).json()) as { keys: { kid: string }[] };
    assert.ok(published.keys.some((k) => k.kid === protectedHeader.kid));
    assert.equal(payload["client_id"], CLIENT.client_id);
    assert.equal(payload["clerk_org_id"], ACME);
    assert.equal(payload["organization_name"], "Acme Inc");
  });

  it("RFC 9068: oauth4webapi's validateJwtAccessToken accepts our access tokens", async () => {
    // The tokens' iss is JWT_ISSUER (docs/api.md says why it is not the metadata issuer).
    const resourceServerView = { ...as, issuer: JWT_ISSUER };
    const request = new Request("http://127.0.0.1/api/extension/usage", {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    const claims = await oauth.validateJwtAccessToken(resourceServerView, request, AUDIENCE, INSECURE);
    assert.equal(claims.client_id, CLIENT.client_id);
    assert.equal(claims.iss, JWT_ISSUER);
    assert.ok(claims.jti && claims.sub && claims.iat && claims.exp);
  });

  it("refresh rotates; reusing the rotated token revokes the family, the newest token included", async () => {
    const rotated = await refresh(tokens.refresh_token!);
    assert.notEqual(rotated.refresh_token, tokens.refresh_token);
    const { payload } = await verifyAccess(rotated.access_token);
    assert.equal(payload["clerk_org_id"], ACME, "the org of the sign-in is asked for again");
    await assert.rejects(refresh(tokens.refresh_token!), isOAuthError("invalid_grant"));
    await assert.rejects(refresh(rotated.refresh_token!), isOAuthError("invalid_grant"));
  });

  it("RFC 7009 revocation: the refresh token stops working; an unknown token is fine", async () => {
    const fresh = await signIn(null);
    assert.equal(fresh["pool"], "personal");
    for (const token of [fresh.refresh_token!, "not-a-token"]) {
      const response = await oauth.revocationRequest(as, CLIENT, oauth.None(), token, INSECURE);
      assert.equal(await oauth.processRevocationResponse(response), undefined);
    }
    await assert.rejects(refresh(fresh.refresh_token!), isOAuthError("invalid_grant"));
  });

  it("the device grant (RFC 8628): pending, approve on the page, tokens", async () => {
    const started = await oauth.deviceAuthorizationRequest(as, CLIENT, oauth.None(), {}, INSECURE);
    const device = await oauth.processDeviceAuthorizationResponse(as, CLIENT, started);
    assert.match(device.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    assert.ok(device.verification_uri_complete);
    const poll = async () =>
      oauth.processDeviceCodeResponse(
        as,
        CLIENT,
        await oauth.deviceCodeGrantRequest(as, CLIENT, oauth.None(), device.device_code, INSECURE),
      );
    await assert.rejects(poll(), (error) => {
      assert.ok(error instanceof oauth.ResponseBodyError);
      assert.ok(["authorization_pending", "slow_down"].includes(error.error), error.error);
      return true;
    });
    await approveDevice(device.verification_uri_complete, session, { approve: ACME });
    await new Promise((r) => setTimeout(r, ((device.interval ?? 5) + 5) * 1000));
    const issued = await poll();
    assert.equal(issued.token_type, "bearer");
    const { payload } = await verifyAccess(issued.access_token);
    assert.equal(payload["clerk_org_id"], ACME);
    // Redeemed once.
    await new Promise((r) => setTimeout(r, ((device.interval ?? 5) + 5) * 1000));
    await assert.rejects(poll(), (error) => error instanceof oauth.ResponseBodyError);
  });

  it("the device grant: Deny on the page is access_denied", async () => {
    const started = await oauth.deviceAuthorizationRequest(as, CLIENT, oauth.None(), {}, INSECURE);
    const device = await oauth.processDeviceAuthorizationResponse(as, CLIENT, started);
    await approveDevice(device.verification_uri_complete!, session, { deny: true });
    await new Promise((r) => setTimeout(r, 1000));
    const response = await oauth.deviceCodeGrantRequest(as, CLIENT, oauth.None(), device.device_code, INSECURE);
    await assert.rejects(oauth.processDeviceCodeResponse(as, CLIENT, response), isOAuthError("access_denied"));
  });

  it("jose verifies the long-lived extension token (typ JWT), and it is not an access token", async () => {
    const token = env("LONG_LIVED_TOKEN");
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      algorithms: ["ES256"],
      typ: "JWT",
      issuer: JWT_ISSUER,
      audience: AUDIENCE,
    });
    assert.equal(protectedHeader.alg, "ES256");
    assert.equal(payload["type"], "extension_long_lived");
    await assert.rejects(verifyAccess(token), errors.JWTClaimValidationFailed); // typ
    await assert.rejects(issuerClient().verifyAccessToken(token));
    const request = new Request("http://127.0.0.1/", { headers: { authorization: `Bearer ${token}` } });
    await assert.rejects(
      oauth.validateJwtAccessToken({ ...as, issuer: JWT_ISSUER }, request, AUDIENCE, INSECURE),
    );
  });

  it("refuses HS256 (even one the server's secret signed), alg none, and kid tricks", async () => {
    const genuine = tokens.access_token;
    const header = decodeProtectedHeader(genuine);
    const claims = decodeJwt(genuine);
    const attacker = await generateKeyPair("ES256", { extractable: true });
    const attackerJwk = await exportJWK(attacker.publicKey);
    const publicJwk = ((await (await fetch(as.jwks_uri!)).json()) as { keys: object[] }).keys[0];
    const forged = {
      // An HS256 token signed with the issuer's real JWT_SECRET (made by the test's Python side).
      hs256Server: env("HS256_TOKEN"),
      // Algorithm confusion: HS256 keyed with the public key.
      hs256PublicKey: await new SignJWT(claims)
        .setProtectedHeader({ alg: "HS256", typ: "at+jwt", kid: header.kid })
        .sign(new TextEncoder().encode(JSON.stringify(publicJwk))),
      none: new UnsecuredJWT(claims).encode(),
      // Our kid, the attacker's key.
      ourKidTheirKey: await new SignJWT(claims)
        .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: header.kid })
        .sign(attacker.privateKey),
      unknownKid: await new SignJWT(claims)
        .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: "attacker-1" })
        .sign(attacker.privateKey),
      // The key embedded in the header (jwk) or pointed at (jku): never trusted.
      embeddedJwk: await new SignJWT(claims)
        .setProtectedHeader({ alg: "ES256", typ: "at+jwt", jwk: attackerJwk, jku: "https://evil.example/jwks" })
        .sign(attacker.privateKey),
      // Our signature, another payload (the org that pays).
      tampered: [
        genuine.split(".")[0],
        Buffer.from(JSON.stringify({ ...claims, clerk_org_id: "org_other" })).toString("base64url"),
        genuine.split(".")[2],
      ].join("."),
    };
    const verifier = issuerClient();
    for (const [name, token] of Object.entries(forged)) {
      await assert.rejects(verifyAccess(token), errors.JOSEError, `jose accepted ${name}`);
      await assert.rejects(verifier.verifyAccessToken(token), Error, `the extension accepted ${name}`);
    }
    await assert.rejects(verifyAccess(forged.hs256Server), errors.JOSEAlgNotAllowed);
    await assert.rejects(verifyAccess(forged.ourKidTheirKey), errors.JWSSignatureVerificationFailed);
    await assert.rejects(verifyAccess(forged.unknownKid), errors.JWKSNoMatchingKey);
    // And the genuine token still verifies.
    assert.equal((await verifier.verifyAccessToken(genuine)).clerk_org_id, ACME);
  });
});

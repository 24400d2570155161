/**
 * Verifying our tokens like the Python issuer (SECURITY.md T1-T6, T10):
 * HS256 with JWT_SECRET, ES256 through our JWKS URL (served here on
 * loopback), exact iss/aud, exp/iat, claim schema, type and typ.
 */

import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { assertEquals, assertRejects } from "./assert.ts";
import { createVerifier, InvalidToken, type TokenVerifier, verifierFromEnv } from "./jwt.ts";
import { claimsFor, HMAC_SECRET, mintHs256, type MintOptions } from "./test_support.ts";

const NOW = 1_800_000_000;
const hs = () => createVerifier({ hmacSecret: HMAC_SECRET, now: () => NOW });
const mint = (options: MintOptions = {}) => mintHs256("user_alice", { now: NOW, ...options });

async function refused(
  verifier: TokenVerifier,
  token: string,
  reason: string,
  expected: ("access" | "extension_long_lived")[] = ["access", "extension_long_lived"],
): Promise<void> {
  const err = await assertRejects(() => verifier.verify(token, expected), InvalidToken);
  assertEquals((err as InvalidToken).reason, reason);
}

const b64url = (value: unknown) =>
  btoa(JSON.stringify(value)).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");

Deno.test("HS256 round trip: access and long-lived tokens verify with every claim", async () => {
  const verifier = hs();
  const access = await verifier.verify(await mint(), ["access"]);
  assertEquals(access.sub, "user_alice");
  assertEquals(access.pool, "personal");
  assertEquals(access.clerk_org_id, null);
  const long = await verifier.verify(await mint({ type: "extension_long_lived" }), [
    "extension_long_lived",
  ]);
  assertEquals(long.type, "extension_long_lived");
});

Deno.test("T1: alg none and algorithms outside the allow-list are refused", async () => {
  const claims = claimsFor("user_alice", { now: NOW });
  const none = `${b64url({ alg: "none", typ: "at+jwt" })}.${b64url(claims)}.`;
  await refused(hs(), none, "alg_not_allowed");
  const hs512 = await new SignJWT(claims as unknown as Record<string, unknown>)
    .setProtectedHeader({ alg: "HS512", typ: "at+jwt" })
    .sign(new TextEncoder().encode(HMAC_SECRET + HMAC_SECRET));
  await refused(hs(), hs512, "alg_not_allowed");
  // ES256 is not allowed when no JWKS is configured.
  const es = await generateKeyPair("ES256");
  const es256 = await new SignJWT(claims as unknown as Record<string, unknown>)
    .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: "k1" })
    .sign(es.privateKey);
  await refused(hs(), es256, "alg_not_allowed");
});

Deno.test("T2/T3: an HS256 token naming a kid, or signed with another secret, is refused", async () => {
  await refused(hs(), await mint({ header: { kid: "k1" } }), "unexpected_kid");
  await refused(
    hs(),
    await mint({ secret: "another-secret-of-at-least-32-bytes!!" }),
    "bad_signature",
  );
});

Deno.test("key-fetching and extension headers are refused", async () => {
  await refused(
    hs(),
    await mint({ header: { jku: "https://evil.example/jwks" } }),
    "unexpected_header",
  );
  await refused(
    hs(),
    await mint({ header: { x5u: "https://evil.example/cert" } }),
    "unexpected_header",
  );
});

Deno.test("T4: wrong issuer (also a prefix), missing or other audience are refused", async () => {
  await refused(hs(), await mint({ overrides: { iss: "softcodes.ai.evil" } }), "wrong_issuer");
  await refused(hs(), await mint({ overrides: { iss: "softcodes" } }), "wrong_issuer");
  await refused(hs(), await mint({ overrides: { aud: "dashboard" } }), "wrong_audience");
  await refused(
    hs(),
    await mint({ overrides: { aud: ["vscode-extension", "x"] } }),
    "wrong_audience",
  );
  await refused(hs(), await mint({ overrides: { aud: undefined } }), "missing_aud");
  const custom = createVerifier({
    hmacSecret: HMAC_SECRET,
    issuer: "issuer.example",
    audience: "aud.example",
    now: () => NOW,
  });
  await refused(custom, await mint(), "wrong_issuer");
  await custom.verify(await mint({ overrides: { iss: "issuer.example", aud: "aud.example" } }), [
    "access",
  ]);
});

Deno.test("T5: token kinds never cross (type and typ)", async () => {
  await refused(hs(), await mint({ type: "extension_long_lived" }), "wrong_type", ["access"]);
  await refused(hs(), await mint({ type: "access" }), "wrong_type", ["extension_long_lived"]);
  // A long-lived token relabelled with the access typ, and the reverse.
  await refused(
    hs(),
    await mint({ type: "extension_long_lived", header: { typ: "at+jwt" } }),
    "wrong_typ",
  );
  await refused(hs(), await mint({ type: "access", header: { typ: "JWT" } }), "wrong_typ");
  await refused(hs(), await mint({ overrides: { type: "refresh" } }), "bad_claims");
});

Deno.test("T6: expired (also exactly at exp) and iat too far ahead are refused", async () => {
  await refused(hs(), await mint({ now: NOW - 600, ttl: 600 }), "expired");
  await refused(hs(), await mint({ now: NOW - 601, ttl: 600 }), "expired");
  await hs().verify(await mint({ now: NOW - 599, ttl: 600 }), ["access"]);
  await refused(hs(), await mint({ now: NOW + 61 }), "issued_in_future");
  await hs().verify(await mint({ now: NOW + 60 }), ["access"]);
});

Deno.test("T10: the claim schema is enforced on verification", async () => {
  await refused(hs(), await mint({ overrides: { extra: 1 } }), "bad_claims");
  await refused(hs(), await mint({ overrides: { pool: undefined } }), "bad_claims");
  await refused(hs(), await mint({ overrides: { clerk_org_id: "org_1" } }), "bad_claims");
  await refused(hs(), await mint({ overrides: { pool: "organization" } }), "bad_claims");
  await refused(hs(), await mint({ overrides: { jti: undefined } }), "missing_jti");
});

Deno.test("malformed tokens are refused without throwing anything else", async () => {
  for (const token of ["", "a.b", "not-a-token", "a.b.c.d", "x".repeat(9000)]) {
    await assertRejects(() => hs().verify(token, ["access"]), InvalidToken);
  }
});

Deno.test("configuration: a short JWT_SECRET and no keys at all stop start-up", () => {
  let message = "";
  try {
    createVerifier({ hmacSecret: "short" });
  } catch (err) {
    message = (err as Error).message;
  }
  assertEquals(message, "JWT_SECRET must be at least 32 bytes");
  try {
    verifierFromEnv({ get: () => undefined });
  } catch (err) {
    message = (err as Error).message;
  }
  assertEquals(message.includes("JWT_SECRET"), true);
});

Deno.test({
  name: "ES256 through our JWKS URL: verifies, refuses unknown kid and forged keys",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const signing = await generateKeyPair("ES256", { extractable: true });
    const jwk = { ...(await exportJWK(signing.publicKey)), kid: "key-1", alg: "ES256", use: "sig" };
    let fetches = 0;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
      fetches += 1;
      return Response.json({ keys: [jwk] });
    });
    try {
      const url = `http://127.0.0.1:${server.addr.port}/.well-known/jwks.json`;
      const verifier = createVerifier({ jwksUrl: url, now: () => NOW });
      const claims = claimsFor("user_bob", { now: NOW }) as unknown as Record<string, unknown>;
      const sign = (kid: string, key: CryptoKey = signing.privateKey) =>
        new SignJWT(claims).setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid }).sign(key);

      const ok = await verifier.verify(await sign("key-1"), ["access"]);
      assertEquals(ok.sub, "user_bob");

      const other = await generateKeyPair("ES256");
      await refused(verifier, await sign("key-1", other.privateKey), "bad_signature");
      await refused(verifier, await sign("key-unknown"), "unknown_kid");
      await refused(verifier, await sign("key-unknown-2"), "unknown_kid");
      // One fetch, plus at most one refetch for unknown kids within the cooldown (T3).
      assertEquals(fetches <= 2, true, `fetched ${fetches} times`);

      const noKid = await new SignJWT(claims).setProtectedHeader({ alg: "ES256", typ: "at+jwt" })
        .sign(signing.privateKey);
      await refused(verifier, noKid, "missing_kid");
      // HS256 is not allowed when only the JWKS is configured.
      await refused(verifier, await mintHs256("user_bob", { now: NOW }), "alg_not_allowed");
    } finally {
      await server.shutdown();
    }
  },
});

Deno.test("L12: with our JWKS, HS256 is refused unless JWT_ACCEPT_HS256=true", async () => {
  const signing = await generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await exportJWK(signing.publicKey)), kid: "key-l12", alg: "ES256", use: "sig" };
  const forged = await mint();
  const both = { hmacSecret: HMAC_SECRET, jwks: { keys: [jwk] }, now: () => NOW };
  await refused(createVerifier(both), forged, "alg_not_allowed");
  const enabled = await createVerifier({ ...both, acceptHs256: true }).verify(forged, ["access"]);
  assertEquals(enabled.sub, "user_alice");
  // Without a JWKS, JWT_SECRET is what verifies: HS256 as before.
  assertEquals((await hs().verify(forged, ["access"])).sub, "user_alice");
  const fromEnv = (extra: Record<string, string>) =>
    verifierFromEnv(new Map(Object.entries({ JWT_SECRET: HMAC_SECRET, ...extra })));
  const current = await mintHs256("user_alice");
  assertEquals(
    (await fromEnv({ JWT_ACCEPT_HS256: "true" }).verify(current, ["access"])).sub,
    "user_alice",
  );
  let message = "";
  try {
    fromEnv({ JWT_ACCEPT_HS256: "maybe" });
  } catch (err) {
    message = (err as Error).message;
  }
  assertEquals(message, "JWT_ACCEPT_HS256 must be true or false");
});

Deno.test("ISSUER_JWKS_URL must be https (http only on loopback)", () => {
  let message = "";
  try {
    createVerifier({ jwksUrl: "http://issuer.example/.well-known/jwks.json" });
  } catch (err) {
    message = (err as Error).message;
  }
  assertEquals(message, "ISSUER_JWKS_URL must use https (http only for localhost)");
});

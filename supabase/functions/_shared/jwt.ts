/**
 * Verifying OUR tokens (the ones py/issuer signs), exactly as the Python
 * issuer does (`issuer.signing.KeyRing.verify`, SECURITY.md T1-T6, T10):
 *
 * - size and header first: an explicit algorithm allow-list (HS256 when
 *   `JWT_SECRET` is configured and no JWKS is, or `JWT_ACCEPT_HS256=true`
 *   says so (L12); ES256 when our JWKS is; never `none`), no
 *   key-fetching or extension headers (`jku`, `jwk`, `x5u`, `x5c`, `crit`);
 * - key selection by `alg` and `kid`: HS256 tokens carry no `kid`; ES256
 *   tokens name a `kid` of our JWKS (`ISSUER_JWKS_URL`, fetched and cached;
 *   an unknown `kid` triggers at most one refetch per cooldown);
 * - the signature, then `iss` and `aud` by exact string equality, `exp` (a
 *   token is dead AT `exp`), `iat` at most 60 s ahead;
 * - the claim schema (every key present, nothing else; org keys null on a
 *   personal token; `clerk_org_id`, `organization_id`, `seat_id` set on an
 *   organization token);
 * - `type` among the expected ones and the header `typ` matching it
 *   (`at+jwt` for access tokens, `JWT` for long-lived extension tokens).
 *
 * Long-lived tokens are also checked against `extension_tokens` (revocation,
 * T7): the caller does that through the RPC (see metered-usage).
 */

import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  type JSONWebKeySet,
  jwtVerify,
  type JWTVerifyGetKey,
  type ProtectedHeaderParameters,
} from "jose";

export type TokenType = "access" | "extension_long_lived";
export const TOKEN_TYPES: readonly TokenType[] = ["access", "extension_long_lived"];

export const TYP_BY_TOKEN_TYPE: Readonly<Record<TokenType, string>> = {
  access: "at+jwt",
  extension_long_lived: "JWT",
};

export const IAT_LEEWAY_SECONDS = 60;
export const MAX_TOKEN_LENGTH = 8192;
export const MIN_HMAC_SECRET_BYTES = 32;
export const DEFAULT_ISSUER = "softcodes.ai";
export const DEFAULT_AUDIENCE = "vscode-extension";

const FORBIDDEN_HEADERS = ["crit", "jku", "jwk", "x5u", "x5c"];

export const ORG_KEYS = [
  "clerk_org_id",
  "organization_id",
  "organization_name",
  "stripe_customer_id",
  "organization_subscription_id",
  "seat_id",
  "seat_role",
  "org_role",
] as const;
const REQUIRED_ORG_KEYS = ["clerk_org_id", "organization_id", "seat_id"] as const;
export const CLAIM_KEYS = [
  "sub",
  "email",
  "type",
  "iat",
  "exp",
  "jti",
  "iss",
  "aud",
  "client_id",
  "pool",
  ...ORG_KEYS,
] as const;

/** The unified claim schema of every token the issuer signs. */
export interface TokenClaims {
  sub: string;
  email: string | null;
  type: TokenType;
  iat: number;
  exp: number;
  jti: string;
  iss: string;
  aud: string;
  /** RFC 9068 §2.2: the OAuth client the token was issued to (`dashboard` for Clerk sessions). */
  client_id: string;
  pool: "organization" | "personal";
  clerk_org_id: string | null;
  organization_id: string | null;
  organization_name: string | null;
  stripe_customer_id: string | null;
  organization_subscription_id: string | null;
  seat_id: string | null;
  seat_role: string | null;
  org_role: string | null;
}

/** A token we refuse; `reason` is a stable code (same names as the Python issuer). */
export class InvalidToken extends Error {
  constructor(readonly reason: string) {
    super(`invalid token: ${reason}`);
    this.name = "InvalidToken";
  }
}

export interface TokenVerifier {
  verify(token: string, expected: readonly TokenType[]): Promise<TokenClaims>;
}

export interface VerifierOptions {
  /** `JWT_SECRET`: enables HS256 (alone, or with `acceptHs256`); at least 32 bytes. */
  hmacSecret?: string;
  /**
   * `JWT_ACCEPT_HS256`: with our JWKS configured, HS256 is refused unless this
   * is true (L12, the issuer's default); `false` refuses it in every case.
   */
  acceptHs256?: boolean;
  /** `ISSUER_JWKS_URL`: our public JWKS; enables ES256. */
  jwksUrl?: string;
  /** A JWKS given inline (tests, or a pinned key set); enables ES256. */
  jwks?: JSONWebKeySet;
  issuer?: string;
  audience?: string;
  /** Seconds since the epoch; injectable for tests. */
  now?: () => number;
  /** Minimum seconds between two refetches of the remote JWKS (default 30). */
  jwksCooldownSeconds?: number;
}

const isNonEmptyString = (v: unknown): v is string => typeof v === "string" && v !== "";
const isInteger = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);

/** Check a payload against the claim schema (T10); throws `InvalidToken("bad_claims")`. */
export function validateClaims(payload: Record<string, unknown>): TokenClaims {
  const keys = Object.keys(payload);
  const allowed = new Set<string>(CLAIM_KEYS);
  if (CLAIM_KEYS.some((k) => !(k in payload)) || keys.some((k) => !allowed.has(k))) {
    throw new InvalidToken("bad_claims");
  }
  for (const k of ["sub", "jti", "iss", "aud", "client_id"]) {
    if (!isNonEmptyString(payload[k])) throw new InvalidToken("bad_claims");
  }
  if (payload.email !== null && typeof payload.email !== "string") {
    throw new InvalidToken("bad_claims");
  }
  if (!TOKEN_TYPES.includes(payload.type as TokenType)) throw new InvalidToken("bad_claims");
  if (!isInteger(payload.iat) || !isInteger(payload.exp) || payload.exp <= payload.iat) {
    throw new InvalidToken("bad_claims");
  }
  for (const k of ORG_KEYS) {
    if (payload[k] !== null && typeof payload[k] !== "string") throw new InvalidToken("bad_claims");
  }
  if (payload.pool === "organization") {
    if (REQUIRED_ORG_KEYS.some((k) => !isNonEmptyString(payload[k]))) {
      throw new InvalidToken("bad_claims");
    }
  } else if (payload.pool === "personal") {
    if (ORG_KEYS.some((k) => payload[k] !== null)) throw new InvalidToken("bad_claims");
  } else {
    throw new InvalidToken("bad_claims");
  }
  return payload as unknown as TokenClaims;
}

/** Build a verifier; throws naming the setting when the configuration is unusable. */
export function createVerifier(options: VerifierOptions): TokenVerifier {
  const issuer = options.issuer || DEFAULT_ISSUER;
  const audience = options.audience || DEFAULT_AUDIENCE;
  const now = options.now ?? (() => Date.now() / 1000);

  let hmacKey: Uint8Array | null = null;
  if (options.hmacSecret !== undefined && options.hmacSecret !== "") {
    hmacKey = new TextEncoder().encode(options.hmacSecret);
    if (hmacKey.length < MIN_HMAC_SECRET_BYTES) {
      throw new Error(`JWT_SECRET must be at least ${MIN_HMAC_SECRET_BYTES} bytes`);
    }
  }
  let ecKeys: JWTVerifyGetKey | null = null;
  if (options.jwks) {
    ecKeys = createLocalJWKSet(options.jwks);
  } else if (options.jwksUrl) {
    let url: URL;
    try {
      url = new URL(options.jwksUrl);
    } catch {
      throw new Error("ISSUER_JWKS_URL is not a URL");
    }
    if (url.protocol !== "https:" && !["localhost", "127.0.0.1", "[::1]"].includes(url.hostname)) {
      throw new Error("ISSUER_JWKS_URL must use https (http only for localhost)");
    }
    ecKeys = createRemoteJWKSet(url, {
      cooldownDuration: (options.jwksCooldownSeconds ?? 30) * 1000,
      cacheMaxAge: 10 * 60 * 1000,
      timeoutDuration: 5000,
    });
  }
  if (hmacKey === null && ecKeys === null) {
    throw new Error("configure JWT_SECRET (HS256) or ISSUER_JWKS_URL (ES256) to verify tokens");
  }
  // L12: once ES256 keys exist, JWT_SECRET verifies nothing unless the deployer says so.
  const acceptHs256 = options.acceptHs256 ?? ecKeys === null;
  if (!acceptHs256) hmacKey = null;
  if (hmacKey === null && ecKeys === null) {
    throw new Error("JWT_ACCEPT_HS256=false needs ISSUER_JWKS_URL (ES256)");
  }
  const algorithms = new Set<string>();
  if (hmacKey) algorithms.add("HS256");
  if (ecKeys) algorithms.add("ES256");

  async function verify(token: string, expected: readonly TokenType[]): Promise<TokenClaims> {
    if (expected.length === 0 || expected.some((t) => !TOKEN_TYPES.includes(t))) {
      throw new Error("expected token types must be among access, extension_long_lived");
    }
    if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH) {
      throw new InvalidToken("malformed");
    }
    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new InvalidToken("malformed");
    }
    if (token.split(".").length !== 3) throw new InvalidToken("malformed");
    const alg = header.alg;
    if (typeof alg !== "string" || !algorithms.has(alg)) throw new InvalidToken("alg_not_allowed");
    if (FORBIDDEN_HEADERS.some((h) => h in header)) throw new InvalidToken("unexpected_header");

    let key: Uint8Array | JWTVerifyGetKey;
    if (alg === "HS256") {
      // HS256 tokens never carry a kid; one that does is an algorithm-confusion attempt (T2/T3).
      if ("kid" in header) throw new InvalidToken("unexpected_kid");
      key = hmacKey!;
    } else {
      if (!isNonEmptyString(header.kid)) throw new InvalidToken("missing_kid");
      key = ecKeys!;
    }

    const currentSeconds = now();
    const verifyOptions = {
      algorithms: [alg],
      issuer,
      audience,
      currentDate: new Date(currentSeconds * 1000),
      requiredClaims: ["iss", "aud", "exp", "iat", "sub", "jti", "client_id"],
    };
    let payload: Record<string, unknown>;
    try {
      const result = typeof key === "function"
        ? await jwtVerify(token, key, verifyOptions)
        : await jwtVerify(token, key, verifyOptions);
      payload = result.payload as Record<string, unknown>;
    } catch (err) {
      throw new InvalidToken(reasonFor(err));
    }

    // Belt and braces: exact equality, never membership or prefix (T4).
    if (payload.iss !== issuer) throw new InvalidToken("wrong_issuer");
    if (payload.aud !== audience) throw new InvalidToken("wrong_audience");
    if (!isInteger(payload.exp) || !isInteger(payload.iat)) throw new InvalidToken("bad_claims");
    if (currentSeconds >= payload.exp) throw new InvalidToken("expired");
    if (payload.iat > currentSeconds + IAT_LEEWAY_SECONDS) {
      throw new InvalidToken("issued_in_future");
    }

    const claims = validateClaims(payload);
    if (!expected.includes(claims.type)) throw new InvalidToken("wrong_type");
    const typ = header.typ;
    if (
      typeof typ !== "string" || typ.toLowerCase() !== TYP_BY_TOKEN_TYPE[claims.type].toLowerCase()
    ) {
      throw new InvalidToken("wrong_typ");
    }
    return claims;
  }

  return { verify };
}

function reasonFor(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return "expired";
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === "iss") return err.reason === "missing" ? "missing_iss" : "wrong_issuer";
    if (err.claim === "aud") return err.reason === "missing" ? "missing_aud" : "wrong_audience";
    if (err.reason === "missing") return `missing_${err.claim}`;
    return "bad_claims";
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "bad_signature";
  if (err instanceof joseErrors.JWKSNoMatchingKey) return "unknown_kid";
  if (err instanceof joseErrors.JWKSMultipleMatchingKeys) return "unknown_kid";
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return "alg_not_allowed";
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) {
    return "keys_unavailable";
  }
  // Anything that is not a JOSE error came from fetching our JWKS (network).
  if (!(err instanceof joseErrors.JOSEError)) return "keys_unavailable";
  return "malformed";
}

/**
 * The verifier the environment configures: `JWT_SECRET`, `ISSUER_JWKS_URL`,
 * `JWT_ACCEPT_HS256` (`true` / `false`; unset: HS256 only without a JWKS, L12),
 * `JWT_ISSUER`, `JWT_AUDIENCE`.
 */
export function verifierFromEnv(
  env: { get(name: string): string | undefined } = Deno.env,
): TokenVerifier {
  const accept = env.get("JWT_ACCEPT_HS256")?.trim().toLowerCase();
  if (accept !== undefined && accept !== "" && accept !== "true" && accept !== "false") {
    throw new Error("JWT_ACCEPT_HS256 must be true or false");
  }
  return createVerifier({
    acceptHs256: accept === "true" ? true : accept === "false" ? false : undefined,
    hmacSecret: env.get("JWT_SECRET"),
    jwksUrl: env.get("ISSUER_JWKS_URL"),
    issuer: env.get("JWT_ISSUER"),
    audience: env.get("JWT_AUDIENCE"),
  });
}

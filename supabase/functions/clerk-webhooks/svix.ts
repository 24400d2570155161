/**
 * Svix webhook signature verification (the scheme Clerk's webhooks use).
 *
 * Each delivery carries `svix-id`, `svix-timestamp` (seconds since the epoch)
 * and `svix-signature`: a space-separated list of `v1,<base64 HMAC>` entries
 * (several during a secret rotation; any one may match). The signed content is
 * `${id}.${timestamp}.${body}` where `body` is the RAW request body: the bytes
 * are authenticated, so a body that was parsed and re-serialised no longer
 * verifies, even when it means the same JSON. The HMAC key is the base64
 * after the `whsec_` prefix of the endpoint's signing secret. Timestamps more
 * than five minutes away from our clock are refused (replay window), and
 * signatures are compared in constant time.
 *
 * The `webhook-*` header names of Standard Webhooks (Svix's white-label
 * prefix) are accepted as well, as Svix's own libraries do.
 */

import { concatBytes, fromBase64, timingSafeEqual, utf8 } from "../_shared/bytes.ts";

/** Replay window: the Svix libraries' default. */
export const TOLERANCE_SECONDS = 5 * 60;

/** Why a delivery was refused; stable codes for logs and responses. */
export type SvixFailure =
  | "missing_headers"
  | "bad_timestamp"
  | "timestamp_out_of_window"
  | "no_v1_signature"
  | "bad_signature";

export class WebhookVerificationError extends Error {
  constructor(readonly reason: SvixFailure) {
    super(`webhook verification failed: ${reason}`);
    this.name = "WebhookVerificationError";
  }
}

/** A parsed signing secret: the HMAC key, ready for Web Crypto. */
export interface SigningKey {
  readonly key: CryptoKey;
}

/**
 * Parse a `whsec_...` signing secret. Throws with a message that names the
 * problem (never the secret) when it is not `whsec_` + base64 of at least 16 bytes.
 */
export async function importSigningSecret(secret: string): Promise<SigningKey> {
  const prefix = "whsec_";
  if (!secret.startsWith(prefix)) {
    throw new Error("webhook signing secret must start with whsec_");
  }
  const raw = fromBase64(secret.slice(prefix.length));
  if (raw === null || raw.length < 16) {
    throw new Error(
      "webhook signing secret must be whsec_ followed by base64 of at least 16 bytes",
    );
  }
  const key = await crypto.subtle.importKey(
    "raw",
    raw as BufferSource,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return { key };
}

/** The headers of one delivery (either prefix). */
export interface SvixHeaders {
  id: string;
  timestamp: string;
  signature: string;
}

/** Read `svix-*` (or `webhook-*`) headers; `null` when any is missing or empty. */
export function readSvixHeaders(headers: Headers): SvixHeaders | null {
  for (const prefix of ["svix-", "webhook-"]) {
    const id = headers.get(`${prefix}id`);
    const timestamp = headers.get(`${prefix}timestamp`);
    const signature = headers.get(`${prefix}signature`);
    if (id && timestamp && signature) return { id, timestamp, signature };
  }
  return null;
}

/** The raw HMAC-SHA256 of `${id}.${timestamp}.` followed by the body bytes. */
export async function sign(
  key: SigningKey,
  id: string,
  timestamp: string,
  body: Uint8Array,
): Promise<Uint8Array> {
  const content = concatBytes(utf8(`${id}.${timestamp}.`), body);
  const mac = await crypto.subtle.sign("HMAC", key.key, content as BufferSource);
  return new Uint8Array(mac);
}

/**
 * Verify one delivery. `body` must be the raw bytes received. `nowSeconds`
 * is our clock. Resolves when valid; throws `WebhookVerificationError` otherwise.
 */
export async function verifyWebhook(
  key: SigningKey,
  headers: SvixHeaders | null,
  body: Uint8Array,
  nowSeconds: number,
  toleranceSeconds: number = TOLERANCE_SECONDS,
): Promise<void> {
  if (headers === null) throw new WebhookVerificationError("missing_headers");
  if (!/^[0-9]{1,12}$/.test(headers.timestamp)) {
    throw new WebhookVerificationError("bad_timestamp");
  }
  const timestamp = Number(headers.timestamp);
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) {
    throw new WebhookVerificationError("timestamp_out_of_window");
  }

  const expected = await sign(key, headers.id, headers.timestamp, body);
  let sawV1 = false;
  let matched = false;
  for (const entry of headers.signature.split(" ")) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    sawV1 = true;
    const candidate = fromBase64(entry.slice(comma + 1));
    // Every candidate is compared (no early exit), each in constant time.
    if (candidate !== null && timingSafeEqual(candidate, expected)) matched = true;
  }
  if (!sawV1) throw new WebhookVerificationError("no_v1_signature");
  if (!matched) throw new WebhookVerificationError("bad_signature");
}

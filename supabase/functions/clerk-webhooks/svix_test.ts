/** Svix signature verification: the cases of issue 9, plus Svix's published example. */

import { assertEquals, assertRejects } from "../_shared/assert.ts";
import { utf8 } from "../_shared/bytes.ts";
import { newWebhookSecret, svixSignature } from "../_shared/test_support.ts";
import {
  importSigningSecret,
  readSvixHeaders,
  type SvixHeaders,
  TOLERANCE_SECONDS,
  verifyWebhook,
  WebhookVerificationError,
} from "./svix.ts";

const NOW = 1_700_000_000;
const BODY =
  '{"data":{"id":"org_1","name":"Acme Inc"},"object":"event","type":"organization.updated"}';

async function refusedWith(promise: Promise<unknown>, reason: string): Promise<void> {
  const err = await assertRejects(() => promise, WebhookVerificationError);
  assertEquals((err as WebhookVerificationError).reason, reason);
}

async function signedHeaders(
  secret: string,
  body: string,
  timestamp = NOW,
  id = "msg_test",
): Promise<SvixHeaders> {
  return {
    id,
    timestamp: String(timestamp),
    signature: await svixSignature(secret, id, timestamp, body),
  };
}

Deno.test("Svix's published example verifies (same scheme, byte for byte)", async () => {
  // From docs.svix.com (Verifying Webhooks Manually / the libraries' example).
  const key = await importSigningSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  const headers = {
    id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
    timestamp: "1614265330",
    signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
  };
  await verifyWebhook(key, headers, utf8('{"test": 2432232314}'), 1614265330);
});

Deno.test("a valid signature over the raw body is accepted", async () => {
  const secret = newWebhookSecret();
  const key = await importSigningSecret(secret);
  await verifyWebhook(key, await signedHeaders(secret, BODY), utf8(BODY), NOW);
});

Deno.test("a tampered body is refused", async () => {
  const secret = newWebhookSecret();
  const key = await importSigningSecret(secret);
  const headers = await signedHeaders(secret, BODY);
  const tampered = BODY.replace("Acme Inc", "Evil Inc");
  await refusedWith(verifyWebhook(key, headers, utf8(tampered), NOW), "bad_signature");
});

Deno.test("a re-serialized body (same JSON, other bytes) is refused", async () => {
  const secret = newWebhookSecret();
  const key = await importSigningSecret(secret);
  const sent = '{ "type": "organization.updated", "data": {"id": "org_1", "name": "Acme Inc"} }';
  const headers = await signedHeaders(secret, sent);
  const reserialized = JSON.stringify(JSON.parse(sent));
  assertEquals(JSON.parse(reserialized), JSON.parse(sent));
  await verifyWebhook(key, headers, utf8(sent), NOW);
  await refusedWith(verifyWebhook(key, headers, utf8(reserialized), NOW), "bad_signature");
});

Deno.test("a timestamp more than 5 minutes old (or ahead) is refused, even correctly signed", async () => {
  const secret = newWebhookSecret();
  const key = await importSigningSecret(secret);
  const old = await signedHeaders(secret, BODY, NOW - TOLERANCE_SECONDS - 1);
  await refusedWith(verifyWebhook(key, old, utf8(BODY), NOW), "timestamp_out_of_window");
  const ahead = await signedHeaders(secret, BODY, NOW + TOLERANCE_SECONDS + 1);
  await refusedWith(verifyWebhook(key, ahead, utf8(BODY), NOW), "timestamp_out_of_window");
  // At the edge of the window it still verifies.
  const edge = await signedHeaders(secret, BODY, NOW - TOLERANCE_SECONDS);
  await verifyWebhook(key, edge, utf8(BODY), NOW);
});

Deno.test("the timestamp is signed: changing it breaks the signature", async () => {
  const secret = newWebhookSecret();
  const key = await importSigningSecret(secret);
  const headers = await signedHeaders(secret, BODY, NOW);
  const moved = { ...headers, timestamp: String(NOW + 1) };
  await refusedWith(verifyWebhook(key, moved, utf8(BODY), NOW), "bad_signature");
});

Deno.test("the id is signed: a signature cannot be replayed under another svix-id", async () => {
  const secret = newWebhookSecret();
  const key = await importSigningSecret(secret);
  const headers = await signedHeaders(secret, BODY, NOW, "msg_a");
  await refusedWith(
    verifyWebhook(key, { ...headers, id: "msg_b" }, utf8(BODY), NOW),
    "bad_signature",
  );
});

Deno.test("rotated secret: two signatures, either one matching is enough", async () => {
  const oldSecret = newWebhookSecret();
  const newSecret = newWebhookSecret();
  const id = "msg_rotation";
  const both = [
    await svixSignature(oldSecret, id, NOW, BODY),
    await svixSignature(newSecret, id, NOW, BODY),
  ].join(" ");
  const headers = { id, timestamp: String(NOW), signature: both };
  // The endpoint holds either secret: both deliveries verify.
  await verifyWebhook(await importSigningSecret(newSecret), headers, utf8(BODY), NOW);
  await verifyWebhook(await importSigningSecret(oldSecret), headers, utf8(BODY), NOW);
  // A third secret matches neither.
  await refusedWith(
    verifyWebhook(await importSigningSecret(newWebhookSecret()), headers, utf8(BODY), NOW),
    "bad_signature",
  );
});

Deno.test("only v1 entries count; garbage entries are skipped", async () => {
  const secret = newWebhookSecret();
  const key = await importSigningSecret(secret);
  const good = await svixSignature(secret, "msg_x", NOW, BODY);
  const mixed = { id: "msg_x", timestamp: String(NOW), signature: `v0,abc v1,!!notbase64 ${good}` };
  await verifyWebhook(key, mixed, utf8(BODY), NOW);
  const v2only = { id: "msg_x", timestamp: String(NOW), signature: good.replace("v1,", "v2,") };
  await refusedWith(verifyWebhook(key, v2only, utf8(BODY), NOW), "no_v1_signature");
});

Deno.test("missing headers and a malformed timestamp are refused", async () => {
  const key = await importSigningSecret(newWebhookSecret());
  await refusedWith(verifyWebhook(key, null, utf8(BODY), NOW), "missing_headers");
  await refusedWith(
    verifyWebhook(key, { id: "m", timestamp: "17e8", signature: "v1,x" }, utf8(BODY), NOW),
    "bad_timestamp",
  );
  assertEquals(readSvixHeaders(new Headers({ "svix-id": "m", "svix-timestamp": "1" })), null);
  assertEquals(
    readSvixHeaders(
      new Headers({ "webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1,x" }),
    ),
    { id: "m", timestamp: "1", signature: "v1,x" },
  );
});

Deno.test("a signing secret must be whsec_ + base64", async () => {
  await assertRejects(
    () => importSigningSecret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    Error,
    "whsec_",
  );
  await assertRejects(() => importSigningSecret("whsec_not base64!"), Error, "base64");
  await assertRejects(() => importSigningSecret("whsec_c2hvcnQ="), Error, "at least 16 bytes");
});

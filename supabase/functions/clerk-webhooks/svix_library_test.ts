/**
 * svix.ts against Svix's own library (`npm:svix`, used here in tests only):
 * the reason svix.ts stays, in docs/performance.md ("Webhook verification").
 *
 * 1. Same scheme: the library's signer and svix.ts agree, byte for byte.
 * 2. The library signs and verifies a decoded string (a `Buffer` is turned
 *    into text first), not the bytes received: two different bodies verify
 *    under one signature. svix.ts authenticates the raw bytes.
 * 3. The library's verify reads the wall clock (no clock can be given), and
 *    answers with messages rather than reasons.
 */

import { Buffer } from "node:buffer";
import { Webhook, WebhookVerificationError as LibraryError } from "svix";
import { assertEquals, assertMatch, assertRejects } from "../_shared/assert.ts";
import { concatBytes, utf8 } from "../_shared/bytes.ts";
import { newWebhookSecret, svixSignature } from "../_shared/test_support.ts";
import { importSigningSecret, verifyWebhook, WebhookVerificationError } from "./svix.ts";

const BODY = '{"data":{"id":"org_1"},"object":"event","type":"organization.updated"}';

Deno.test("the svix library's signer and svix.ts agree (published example, fresh secrets)", async () => {
  const published = new Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  assertEquals(
    published.sign(
      "msg_p5jXN8AQM9LWM0D4loKWxJek",
      new Date(1614265330 * 1000),
      '{"test": 2432232314}',
    ),
    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
  );
  for (let i = 0; i < 20; i++) {
    const secret = newWebhookSecret();
    const now = 1_700_000_000 + i;
    const signature = new Webhook(secret).sign(`msg_${i}`, new Date(now * 1000), BODY);
    assertEquals(signature, await svixSignature(secret, `msg_${i}`, now, BODY));
    const headers = { id: `msg_${i}`, timestamp: String(now), signature };
    await verifyWebhook(await importSigningSecret(secret), headers, utf8(BODY), now);
  }
});

Deno.test("the library authenticates decoded text, not bytes: two bodies, one signature", async () => {
  const secret = newWebhookSecret();
  const library = new Webhook(secret);
  const body = (last: number) =>
    concatBytes(
      concatBytes(utf8('{"type":"user.updated","data":{"id":"user_1","x":"'), Uint8Array.of(last)),
      utf8('"}}'),
    );
  const sent = body(0xff);
  const other = body(0xfe); // another byte string: not what was signed
  const now = Math.floor(Date.now() / 1000);
  const signature = library.sign("msg_bytes", new Date(now * 1000), Buffer.from(sent));
  const headers = {
    "svix-id": "msg_bytes",
    "svix-timestamp": String(now),
    "svix-signature": signature,
  };
  // The library accepts the other bytes under the same signature...
  library.verify(Buffer.from(other), headers);
  // ...svix.ts refuses both: neither byte string is what the signature covers.
  const key = await importSigningSecret(secret);
  const ours = { id: "msg_bytes", timestamp: String(now), signature };
  for (const bytes of [sent, other]) {
    const err = await assertRejects(
      () => verifyWebhook(key, ours, bytes, now),
      WebhookVerificationError,
    );
    assertEquals((err as WebhookVerificationError).reason, "bad_signature");
  }
});

Deno.test("the library's verify reads the wall clock; svix.ts takes the clock it is given", async () => {
  const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const headers = {
    "svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "svix-timestamp": "1614265330",
    "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
  };
  let refused: unknown = null;
  try {
    new Webhook(secret).verify('{"test": 2432232314}', headers);
  } catch (err) {
    refused = err;
  }
  if (!(refused instanceof LibraryError)) throw new Error(`not refused: ${refused}`);
  assertMatch(refused.message, /too old/); // a message, not a reason code
  await verifyWebhook(
    await importSigningSecret(secret),
    {
      id: headers["svix-id"],
      timestamp: headers["svix-timestamp"],
      signature: headers["svix-signature"],
    },
    utf8('{"test": 2432232314}'),
    1614265330,
  );
});

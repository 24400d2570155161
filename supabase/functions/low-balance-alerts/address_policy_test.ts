/** H6: which addresses and URLs the deliverer refuses before any connection. */

import { assertEquals } from "../_shared/assert.ts";
import {
  type AddressPolicy,
  checkWebhookUrl,
  isPublicAddress,
  STRICT_POLICY,
} from "./address_policy.ts";

const ADDRESSES: [string, boolean][] = [
  ["93.184.215.14", true],
  ["8.8.8.8", true],
  ["2606:4700:4700::1111", true],
  ["[2606:4700:4700::1111]", true],
  ["127.0.0.1", false],
  ["127.255.0.9", false],
  ["0.0.0.0", false],
  ["10.0.0.1", false],
  ["172.16.0.1", false],
  ["172.32.0.1", true],
  ["192.168.0.1", false],
  ["100.64.0.1", false],
  ["169.254.169.254", false],
  ["224.0.0.1", false],
  ["255.255.255.255", false],
  ["::1", false],
  ["[::1]", false],
  ["::", false],
  ["::ffff:127.0.0.1", false],
  ["::ffff:7f00:1", false],
  ["::ffff:8.8.8.8", false],
  ["64:ff9b::808:808", false],
  ["fc00::1", false],
  ["fd00::1", false],
  ["fe80::1", false],
  ["ff02::1", false],
  ["2002:7f00:1::", false],
  ["2001:db8::1", false],
  ["2001::1", false],
  ["not an address", false],
  ["127.1", false],
];

Deno.test("H6: only globally routable unicast addresses are public", () => {
  for (const [address, expected] of ADDRESSES) {
    assertEquals(isPublicAddress(address), expected, address);
  }
});

function resolvingTo(addresses: string[]): AddressPolicy {
  return { ...STRICT_POLICY, resolve: () => Promise.resolve(addresses) };
}

const URLS: [string, AddressPolicy, string | null][] = [
  ["https://hooks.example.com/x", resolvingTo(["93.184.215.14"]), null],
  ["https://hooks.example.com/x", resolvingTo(["93.184.215.14", "127.0.0.1"]), "refused_address"],
  ["https://hooks.example.com/x", resolvingTo(["2606:4700::1", "fd00::1"]), "refused_address"],
  ["https://hooks.example.com/x", resolvingTo([]), "unreachable"],
  ["http://hooks.example.com/x", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://u:p@hooks.example.com/x", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://127.0.0.1/internal", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://127.1/internal", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://0x7f000001/", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://0/", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://[::1]/", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://[::ffff:127.0.0.1]/", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://localhost/", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://metadata.google.internal/", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["https://metadata/", resolvingTo(["93.184.215.14"]), "refused_address"],
  ["not a url", resolvingTo(["93.184.215.14"]), "refused_address"],
];

Deno.test("H6: a URL is posted to only when it is https and every resolved address is public", async () => {
  for (const [url, policy, expected] of URLS) {
    const outcome = await checkWebhookUrl(url, policy, AbortSignal.timeout(1000));
    assertEquals(outcome, expected, url);
  }
});

Deno.test("H6: the strict policy resolves with the system resolver: no answer is unreachable", async () => {
  const outcome = await checkWebhookUrl(
    "https://no-such-host.invalid/hook",
    STRICT_POLICY,
    AbortSignal.timeout(3000),
  );
  assertEquals(outcome, "unreachable");
});

/**
 * Where the alert deliverer may POST (SECURITY.md H6): the same rules as the
 * store-time check in SQL (`private.webhook_url_refusal`), applied again at
 * delivery time to every address the name resolves to.
 *
 * - https only, no userinfo;
 * - an IP literal must be public (WHATWG's `URL` has already turned `127.1`,
 *   `0x7f.1` or `2130706433` into `127.0.0.1`);
 * - a name: at least two labels, not under `localhost`, `local`, `internal`,
 *   `localdomain`, `lan`, `home`, `corp`, `arpa`, not a metadata name; then
 *   `Deno.resolveDns` (A and AAAA): refused if ANY address is not public, and
 *   unreachable if there is none.
 *
 * Residual risk, said plainly: Deno's `fetch` resolves the name again and has
 * no hook to connect to the address we checked, so a name whose DNS answer
 * changes between our check and the connection (rebinding with a short TTL)
 * is not caught here; the store-time rule, the https-only rule (a rebound name
 * must still present a valid certificate for itself) and the short timeout
 * bound what it can reach.
 *
 * A test that needs a "public" receiver on 127.0.0.1 passes its own
 * `AddressPolicy` to `deliverDueAlerts`; `STRICT_POLICY` is the default.
 */

/** How a delivery decides whether a URL may be posted to. */
export interface AddressPolicy {
  /** Accept http: URLs (never in production; tests with a local receiver). */
  allowHttp: boolean;
  /** Is this address (as `Deno.resolveDns` or `URL.hostname` spells it) public? */
  isPublic(address: string): boolean;
  /** All A and AAAA addresses of a name; [] when it has none. */
  resolve(name: string, signal: AbortSignal): Promise<string[]>;
}

/** The outcome of a refused or unresolvable URL. */
export type AddressRefusal = "refused_address" | "unreachable";

const IPV4_BLOCKED: [string, number][] = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
];

const INTERNAL_SUFFIXES = new Set([
  "localhost",
  "local",
  "internal",
  "localdomain",
  "lan",
  "home",
  "corp",
  "arpa",
]);
const METADATA_NAMES = new Set([
  "metadata.goog",
  "metadata.tencentyun.com",
  "metadata.platformequinix.com",
]);

/** A canonical dotted-quad IPv4 address as a 32-bit number, else null. */
function parseIpv4(text: string): number | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return null;
    value = value * 256 + Number(part);
  }
  return value;
}

/** An IPv6 address (optionally with a dotted IPv4 tail) as 8 groups, else null. */
function parseIpv6(text: string): number[] | null {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return null;
  let groups = text;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const v4 = parseIpv4(text.slice(lastColon + 1));
    if (v4 === null) return null;
    tail.push(Math.floor(v4 / 65536), v4 % 65536);
    const prefix = text.slice(0, lastColon + 1);
    groups = prefix.endsWith("::") ? prefix : prefix.slice(0, -1);
  }
  const halves = groups.split("::");
  if (halves.length > 2) return null;
  const toGroups = (s: string) => (s === "" ? [] : s.split(":"));
  const head = toGroups(halves[0]);
  const rest = halves.length === 2 ? toGroups(halves[1]) : [];
  const explicit = head.length + rest.length + tail.length;
  if (halves.length === 1 ? explicit !== 8 : explicit > 7) return null;
  const fill = new Array(8 - explicit).fill("0");
  const all = [...head, ...(halves.length === 2 ? fill : []), ...rest];
  const out: number[] = [];
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    out.push(parseInt(g, 16));
  }
  return [...out, ...tail];
}

function inV6Prefix(groups: number[], prefix: number[], bits: number): boolean {
  for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
    const mask = bits >= 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff;
    if ((groups[i] & mask) !== ((prefix[i] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * True for a globally routable unicast address: not loopback, private, CGNAT,
 * link-local, unique-local, multicast, unspecified, documentation,
 * IPv4-mapped or 6to4. Anything that does not parse is not public.
 */
export function isPublicAddress(address: string): boolean {
  const bare = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address;
  const v4 = parseIpv4(bare);
  if (v4 !== null) {
    return !IPV4_BLOCKED.some(([net, bits]) => {
      const size = 2 ** (32 - bits);
      return Math.floor(v4 / size) === Math.floor(parseIpv4(net)! / size);
    });
  }
  const v6 = parseIpv6(bare);
  if (v6 === null) return false;
  return inV6Prefix(v6, [0x2000], 3) &&
    !inV6Prefix(v6, [0x2001, 0x0000], 23) && // IETF protocol assignments, Teredo
    !inV6Prefix(v6, [0x2001, 0x0db8], 32) && // documentation
    !inV6Prefix(v6, [0x2002], 16) && // 6to4
    !inV6Prefix(v6, [0x3fff, 0x0000], 20); // documentation
}

/** Is this host name one we refuse without resolving it? */
export function isInternalName(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, "");
  const labels = name.split(".");
  return labels.length < 2 || INTERNAL_SUFFIXES.has(labels[labels.length - 1]) ||
    METADATA_NAMES.has(name);
}

async function resolveAll(name: string, signal: AbortSignal): Promise<string[]> {
  const lookups = await Promise.allSettled([
    Deno.resolveDns(name, "A", { signal }),
    Deno.resolveDns(name, "AAAA", { signal }),
  ]);
  signal.throwIfAborted();
  const found = lookups.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
  const failures = lookups.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
  // A name with records of one family only is fine; an error other than "no
  // such record" (a server failure) is not a clean answer: fail closed.
  if (failures.some((f) => !(f.reason instanceof Deno.errors.NotFound))) {
    throw new Error("DNS lookup failed");
  }
  return found;
}

/** The default: https, public addresses only, the system resolver. */
export const STRICT_POLICY: AddressPolicy = {
  allowHttp: false,
  isPublic: isPublicAddress,
  resolve: resolveAll,
};

/**
 * null when `url` may be posted to now, else the outcome to record. Throws
 * only when `signal` aborts (the caller counts that as a timeout).
 */
export async function checkWebhookUrl(
  url: string,
  policy: AddressPolicy,
  signal: AbortSignal,
): Promise<AddressRefusal | null> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "refused_address";
  }
  const schemeOk = parsed.protocol === "https:" ||
    (policy.allowHttp && parsed.protocol === "http:");
  if (!schemeOk || parsed.username !== "" || parsed.password !== "") return "refused_address";
  const host = parsed.hostname;
  if (host.startsWith("[") || parseIpv4(host) !== null) {
    return policy.isPublic(host) ? null : "refused_address";
  }
  if (isInternalName(host)) return "refused_address";
  let addresses: string[];
  try {
    addresses = await policy.resolve(host, signal);
  } catch (err) {
    if (signal.aborted) throw err;
    return "unreachable";
  }
  if (addresses.length === 0) return "unreachable";
  return addresses.every((a) => policy.isPublic(a)) ? null : "refused_address";
}

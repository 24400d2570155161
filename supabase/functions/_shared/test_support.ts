/**
 * Test support (imported by *_test.ts only; never deployed as a function).
 *
 * - `DATABASE_URL`: a superuser URL of a fresh, migrated test database
 *   (py/tests/test_edge_functions.py passes one from the `new_db` fixture).
 *   Tests that need it are ignored without it, and that test checks that
 *   nothing was ignored.
 * - Arrange helpers write real rows with the superuser connection, the way
 *   the issuer or an operator would; the code under test runs as
 *   service_role (PostgresRpc's default).
 * - Token minting with the issuer's claim schema, and Svix signing.
 */

import postgres from "postgres";
import { SignJWT } from "jose";
import { toBase64 } from "./bytes.ts";
import type { TokenClaims, TokenType } from "./jwt.ts";
import { PostgresRpc } from "./rpc.ts";

export const DB_URL: string | undefined = Deno.env.get("DATABASE_URL") || undefined;
export const NO_DB = DB_URL === undefined;

export const HMAC_SECRET = "test-secret-that-is-at-least-32-bytes-long!!";

/** A short random suffix so tests sharing one database never collide. */
export function unique(prefix: string): string {
  return `${prefix}_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** A superuser connection for arranging and inspecting rows. */
export function adminSql(): postgres.Sql {
  if (DB_URL === undefined) throw new Error("DATABASE_URL is not set");
  return postgres(DB_URL, { max: 1, onnotice: () => {}, prepare: false });
}

export interface OrgFixture {
  clerkOrgId: string;
  organizationId: string;
  name: string;
  subscriptionId: string | null;
}

/** A user with `personal` personal credits. */
export async function createUser(
  sql: postgres.Sql,
  clerkUserId: string,
  personal = 0,
): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into public.users (clerk_user_id, email)
    values (${clerkUserId}, ${clerkUserId + "@example.com"})
    returning id`;
  if (personal > 0) {
    await sql`select public.grant_credits(
      p_amount => ${String(personal)}::numeric, p_description => 'test grant',
      p_clerk_user_id => ${clerkUserId})`;
  }
  return row.id;
}

/** An org with a current subscription of `status` holding `pool` credits (none when status is null). */
export async function createOrg(
  sql: postgres.Sql,
  name: string,
  pool: number,
  status: string | null = "active",
): Promise<OrgFixture> {
  const clerkOrgId = unique("org");
  const [org] = await sql<{ id: string }[]>`
    insert into public.organizations (clerk_org_id, name) values (${clerkOrgId}, ${name})
    returning id`;
  let subscriptionId: string | null = null;
  if (status !== null) {
    const [sub] = await sql<{ id: string }[]>`
      insert into public.organization_subscriptions (organization_id, stripe_subscription_id, status)
      values (${org.id}, ${unique("sub")}, ${status})
      returning id`;
    subscriptionId = sub.id;
    if (pool > 0) {
      // Grants are not gated by the subscription's status.
      await sql`select public.grant_credits(
        p_amount => ${String(pool)}::numeric, p_description => 'test pool',
        p_clerk_org_id => ${clerkOrgId})`;
    }
  }
  return { clerkOrgId, organizationId: org.id, name, subscriptionId };
}

/** A seat of `status` for the user in the org. */
export async function createSeat(
  sql: postgres.Sql,
  org: OrgFixture,
  userId: string,
  status = "active",
  role = "member",
): Promise<string> {
  const [seat] = await sql<{ id: string }[]>`
    insert into public.organization_seats (organization_id, user_id, role, status)
    values (${org.organizationId}, ${userId}, ${role}, ${status})
    returning id`;
  return seat.id;
}

export async function personalBalance(sql: postgres.Sql, clerkUserId: string): Promise<string> {
  const [row] = await sql<{ b: string }[]>`
    select credits_balance::text as b from public.users where clerk_user_id = ${clerkUserId}`;
  return row.b;
}

export async function poolBalance(sql: postgres.Sql, org: OrgFixture): Promise<string> {
  const [row] = await sql<{ b: string }[]>`
    select credits_balance::text as b from public.organization_subscriptions
    where organization_id = ${org.organizationId} and is_current`;
  return row.b;
}

// -- tokens ----------------------------------------------------------------------

export interface MintOptions {
  type?: TokenType;
  org?: { fixture: OrgFixture; seatId: string; seatRole?: string } | null;
  ttl?: number;
  now?: number;
  overrides?: Record<string, unknown>;
  header?: Record<string, unknown>;
  secret?: string;
}

/** The claims the Python issuer would sign (every key, nulls included). */
export function claimsFor(sub: string, options: MintOptions = {}): TokenClaims {
  const now = Math.floor(options.now ?? Date.now() / 1000);
  const org = options.org ?? null;
  return {
    sub,
    email: `${sub}@example.com`,
    type: options.type ?? "access",
    iat: now,
    exp: now + (options.ttl ?? 600),
    jti: crypto.randomUUID(),
    iss: "softcodes.ai",
    aud: "vscode-extension",
    client_id: "vscode-extension",
    pool: org ? "organization" : "personal",
    clerk_org_id: org ? org.fixture.clerkOrgId : null,
    organization_id: org ? org.fixture.organizationId : null,
    organization_name: org ? org.fixture.name : null,
    stripe_customer_id: null,
    organization_subscription_id: org ? org.fixture.subscriptionId : null,
    seat_id: org ? org.seatId : null,
    seat_role: org ? (org.seatRole ?? "member") : null,
    org_role: org ? "org:member" : null,
  };
}

/** An HS256 token like the issuer's (`typ` at+jwt for access, JWT for long-lived). */
export async function mintHs256(sub: string, options: MintOptions = {}): Promise<string> {
  const claims = { ...claimsFor(sub, options), ...(options.overrides ?? {}) };
  const typ = (claims.type === "extension_long_lived") ? "JWT" : "at+jwt";
  const header = { alg: "HS256", typ, ...(options.header ?? {}) };
  return await new SignJWT(claims as unknown as Record<string, unknown>)
    .setProtectedHeader(header as { alg: string })
    .sign(new TextEncoder().encode(options.secret ?? HMAC_SECRET));
}

// -- Svix --------------------------------------------------------------------------

/** A fresh `whsec_` secret (24 random bytes, like Svix's). */
export function newWebhookSecret(): string {
  return "whsec_" + toBase64(crypto.getRandomValues(new Uint8Array(24)));
}

/** `v1,<base64 HMAC>` of `${id}.${timestamp}.${body}` with `secret`. */
export async function svixSignature(
  secret: string,
  id: string,
  timestamp: number | string,
  body: string | Uint8Array,
): Promise<string> {
  const keyBytes = Uint8Array.from(atob(secret.slice("whsec_".length)), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey(
    "raw",
    keyBytes,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const bodyBytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const prefix = new TextEncoder().encode(`${id}.${timestamp}.`);
  const content = new Uint8Array(prefix.length + bodyBytes.length);
  content.set(prefix);
  content.set(bodyBytes, prefix.length);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, content));
  return `v1,${toBase64(mac)}`;
}

/** A signed webhook request as Svix would send it. */
export async function svixRequest(
  secret: string,
  body: string,
  options: { id?: string; timestamp?: number; signature?: string } = {},
): Promise<Request> {
  const id = options.id ?? unique("msg");
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const signature = options.signature ?? await svixSignature(secret, id, timestamp, body);
  return new Request("http://localhost/functions/v1/clerk-webhooks", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "svix-id": id,
      "svix-timestamp": String(timestamp),
      "svix-signature": signature,
    },
    body,
  });
}

// -- Clerk events (shapes from Clerk's webhook payloads) ------------------------------

export function organizationEvent(
  type: "organization.created" | "organization.updated" | "organization.deleted",
  clerkOrgId: string,
  name: string,
  options: { timestamp?: number; createdBy?: string } = {},
): Record<string, unknown> {
  const timestamp = options.timestamp ?? Date.now();
  const data = type === "organization.deleted"
    ? { deleted: true, id: clerkOrgId, object: "organization" }
    : {
      created_at: timestamp,
      created_by: options.createdBy ?? "user_creator",
      id: clerkOrgId,
      image_url: "https://img.clerk.com/xxxxxx",
      logo_url: null,
      name,
      object: "organization",
      public_metadata: {},
      slug: name.toLowerCase().replaceAll(" ", "-"),
      updated_at: timestamp,
    };
  return {
    data,
    event_attributes: { http_request: { client_ip: "0.0.0.0", user_agent: "test" } },
    object: "event",
    timestamp,
    type,
  };
}

export function membershipEvent(
  type:
    | "organizationMembership.created"
    | "organizationMembership.updated"
    | "organizationMembership.deleted",
  clerkOrgId: string,
  orgName: string,
  clerkUserId: string,
  role: string,
  options: { timestamp?: number; createdBy?: string; identifier?: string } = {},
): Record<string, unknown> {
  const timestamp = options.timestamp ?? Date.now();
  return {
    data: {
      created_at: timestamp,
      id: unique("orgmem"),
      object: "organization_membership",
      organization: {
        created_at: timestamp,
        created_by: options.createdBy ?? "user_creator",
        id: clerkOrgId,
        image_url: "https://img.clerk.com/xxxxxx",
        logo_url: null,
        name: orgName,
        object: "organization",
        public_metadata: {},
        slug: orgName.toLowerCase().replaceAll(" ", "-"),
        updated_at: timestamp,
      },
      permissions: [],
      public_metadata: {},
      public_user_data: {
        first_name: "Test",
        has_image: false,
        identifier: options.identifier ?? `${clerkUserId}@example.org`,
        image_url: "https://img.clerk.com/xxxxxx",
        last_name: "User",
        profile_image_url: "https://www.gravatar.com/avatar?d=mp",
        user_id: clerkUserId,
      },
      role,
      updated_at: timestamp,
    },
    event_attributes: { http_request: { client_ip: "0.0.0.0", user_agent: "test" } },
    object: "event",
    timestamp,
    type,
  };
}

// -- database context ------------------------------------------------------------------

export interface DbContext {
  /** The code under test's connection (runs as service_role). */
  rpc: PostgresRpc;
  /** Superuser connection for arranging and inspecting. */
  sql: postgres.Sql;
}

/** Run `fn` with a fresh service-role RPC and an admin connection, closing both after. */
export async function withDb(fn: (ctx: DbContext) => Promise<void>): Promise<void> {
  const rpc = new PostgresRpc(DB_URL!);
  const sql = adminSql();
  try {
    await fn({ rpc, sql });
  } finally {
    await rpc.close();
    await sql.end({ timeout: 5 });
  }
}

/**
 * clerk-webhooks end to end against the real test database: signed requests
 * go through the handler, the RPC applies them, and the tests read the rows.
 */

import { assert, assertEquals, expectJson } from "../_shared/assert.ts";
import {
  createOrg,
  createSeat,
  createUser,
  type DbContext,
  membershipEvent,
  newWebhookSecret,
  NO_DB,
  organizationEvent,
  svixRequest,
  svixSignature,
  unique,
  withDb,
} from "../_shared/test_support.ts";
import type { ClerkEventResult } from "../_shared/db_types.ts";
import { handleClerkWebhook, type WebhookDeps } from "./handler.ts";
import { importSigningSecret } from "./svix.ts";

const SECRET = newWebhookSecret();
const silent = () => {};

async function depsFor(ctx: DbContext): Promise<WebhookDeps> {
  return { rpc: ctx.rpc, signingKey: await importSigningSecret(SECRET), log: silent };
}

async function deliver(
  ctx: DbContext,
  event: Record<string, unknown>,
  options: { id?: string; timestamp?: number } = {},
): Promise<Record<string, unknown>> {
  const response = await handleClerkWebhook(
    await svixRequest(SECRET, JSON.stringify(event), options),
    await depsFor(ctx),
  );
  return await expectJson(response, 200);
}

interface SeatRow {
  role: string;
  status: string;
  email: string | null;
}

async function seatOf(
  ctx: DbContext,
  clerkOrgId: string,
  clerkUserId: string,
): Promise<SeatRow | null> {
  const rows = await ctx.sql<SeatRow[]>`
    select s.role, s.status, u.email
    from public.organization_seats as s
    join public.organizations as o on o.id = s.organization_id
    join public.users as u on u.id = s.user_id
    where o.clerk_org_id = ${clerkOrgId} and u.clerk_user_id = ${clerkUserId}`;
  return rows[0] ?? null;
}

async function orgName(ctx: DbContext, clerkOrgId: string): Promise<string | null> {
  const rows = await ctx.sql<{ name: string }[]>`
    select name from public.organizations where clerk_org_id = ${clerkOrgId}`;
  return rows[0]?.name ?? null;
}

async function eventRows(ctx: DbContext, svixId: string): Promise<number> {
  const [row] = await ctx.sql<{ n: number }[]>`
    select count(*)::int as n from public.clerk_webhook_events where svix_id = ${svixId}`;
  return row.n;
}

/** The columns of `public.clerk_event_result` (db_types.ts `ClerkEventResult`). */
const CLERK_EVENT_RESULT_KEYS: readonly (keyof ClerkEventResult)[] = [
  "applied",
  "duplicate",
  "outcome",
  "reason",
  "svix_id",
  "type",
  "clerk_org_id",
  "clerk_user_id",
  "organization_id",
  "user_id",
  "seat_id",
  "seat_role",
  "seat_status",
  "seat_status_kept",
  "seats_revoked",
  "extension_tokens_revoked",
  "refresh_tokens_revoked",
];

const dbTest = (name: string, fn: (ctx: DbContext) => Promise<void>) =>
  Deno.test({ name, ignore: NO_DB, fn: () => withDb(fn) });

dbTest("organization.created then organization.updated upsert the organization", async (ctx) => {
  const org = unique("org");
  const created = await deliver(ctx, organizationEvent("organization.created", org, "Acme Inc"));
  assertEquals(created.applied, true);
  assertEquals(created.duplicate, false);
  assertEquals(created.outcome, "applied");
  assertEquals(created.clerk_org_id, org);
  assertEquals(created.seats_revoked, null);
  // The answer is public.clerk_event_result: every column, always.
  assertEquals(Object.keys(created).sort(), [...CLERK_EVENT_RESULT_KEYS].sort());
  assertEquals(await orgName(ctx, org), "Acme Inc");

  const updated = await deliver(ctx, organizationEvent("organization.updated", org, "Acme Corp"));
  assertEquals(updated.applied, true);
  assertEquals(await orgName(ctx, org), "Acme Corp");
});

dbTest(
  "organizationMembership.created creates the user and an active seat with the mapped role",
  async (ctx) => {
    const org = unique("org");
    const [creator, admin, member, custom] = ["user_c", "user_a", "user_m", "user_x"].map(unique);
    await deliver(
      ctx,
      organizationEvent("organization.created", org, "Acme Inc", { createdBy: creator }),
    );
    const ev = (user: string, role: string) =>
      membershipEvent("organizationMembership.created", org, "Acme Inc", user, role, {
        createdBy: creator,
      });

    const result = await deliver(ctx, ev(creator, "org:admin"));
    assertEquals(result.applied, true);
    assertEquals(result.seat_status, "active");
    await deliver(ctx, ev(admin, "org:admin"));
    await deliver(ctx, ev(member, "org:member"));
    await deliver(ctx, ev(custom, "org:billing_manager"));

    assertEquals(await seatOf(ctx, org, creator), {
      role: "owner",
      status: "active",
      email: `${creator}@example.org`,
    });
    assertEquals((await seatOf(ctx, org, admin))?.role, "admin");
    assertEquals((await seatOf(ctx, org, member))?.role, "member");
    assertEquals((await seatOf(ctx, org, custom))?.role, "member");
  },
);

dbTest(
  "a membership event for an org never seen before creates the org from its payload",
  async (ctx) => {
    const org = unique("org");
    const user = unique("user");
    await deliver(
      ctx,
      membershipEvent("organizationMembership.created", org, "Late Org", user, "org:member"),
    );
    assertEquals(await orgName(ctx, org), "Late Org");
    assertEquals((await seatOf(ctx, org, user))?.status, "active");
  },
);

dbTest("organizationMembership.updated changes the role and keeps the status", async (ctx) => {
  const org = unique("org");
  const user = unique("user");
  const t0 = Date.now() - 60_000;
  await deliver(
    ctx,
    membershipEvent("organizationMembership.created", org, "Acme", user, "org:member", {
      timestamp: t0,
    }),
  );
  await ctx.sql`select public.set_seat_status(${org}, ${user}, 'suspended')`;
  const result = await deliver(
    ctx,
    membershipEvent("organizationMembership.updated", org, "Acme", user, "org:admin", {
      timestamp: t0 + 1000,
    }),
  );
  assertEquals(result.applied, true);
  assertEquals(await seatOf(ctx, org, user), {
    role: "admin",
    status: "suspended",
    email: `${user}@example.org`,
  });
});

dbTest("a duplicate svix-id is applied once: the retry changes nothing", async (ctx) => {
  const org = unique("org");
  const user = unique("user");
  const id = unique("msg");
  const event = membershipEvent("organizationMembership.created", org, "Acme", user, "org:member");
  const first = await deliver(ctx, event, { id });
  assertEquals(first.applied, true);
  // Meanwhile the seat is suspended here; a redelivery must not re-activate it.
  await ctx.sql`select public.set_seat_status(${org}, ${user}, 'suspended')`;

  const again = await deliver(ctx, event, { id });
  assertEquals(again.duplicate, true);
  assertEquals(again.applied, false);
  assertEquals((await seatOf(ctx, org, user))?.status, "suspended");
  assertEquals(await eventRows(ctx, id), 1);
});

dbTest(
  "organizationMembership.deleted revokes the seat: a stale org token can no longer spend",
  async (ctx) => {
    const alice = unique("user_alice");
    const userId = await createUser(ctx.sql, alice, 50);
    const org = await createOrg(ctx.sql, "Acme Inc", 100);
    await createSeat(ctx.sql, org, userId, "active");

    const spend = () =>
      ctx.rpc.deductCreditsPooled({
        clerkUserId: alice,
        amount: "1",
        description: "usage",
        clerkOrgId: org.clerkOrgId,
        idempotencyKey: null,
        context: {},
      });
    assertEquals((await spend()).ok, true);

    const result = await deliver(
      ctx,
      membershipEvent(
        "organizationMembership.deleted",
        org.clerkOrgId,
        "Acme Inc",
        alice,
        "org:member",
      ),
    );
    assertEquals(result.applied, true);
    assertEquals(result.seat_status, "revoked");
    assertEquals(result.clerk_user_id, alice);
    assertEquals(result.user_id, userId);

    const refused = await spend();
    assertEquals(refused.ok, false);
    assertEquals(refused.reason, "no_active_seat");
    // And no org attribution for the next token: it will be personal.
    const [attr] = await ctx.sql<{ a: unknown }[]>`
      select public.resolve_org_attribution(${alice}, ${org.clerkOrgId}) as a`;
    assertEquals(attr.a, null);
  },
);

dbTest(
  "organization.deleted revokes every seat and later membership events are ignored",
  async (ctx) => {
    const org = unique("org");
    const [a, b, c] = ["user_a", "user_b", "user_c"].map(unique);
    const t0 = Date.now() - 60_000;
    for (const user of [a, b]) {
      await deliver(
        ctx,
        membershipEvent("organizationMembership.created", org, "Doomed", user, "org:member", {
          timestamp: t0,
        }),
      );
    }
    const deleted = await deliver(
      ctx,
      organizationEvent("organization.deleted", org, "", { timestamp: t0 + 1000 }),
    );
    assertEquals(deleted.applied, true);
    assertEquals(deleted.seats_revoked, 2);
    assertEquals((await seatOf(ctx, org, a))?.status, "revoked");
    assertEquals((await seatOf(ctx, org, b))?.status, "revoked");

    const late = await deliver(
      ctx,
      membershipEvent("organizationMembership.created", org, "Doomed", c, "org:member", {
        timestamp: t0 + 2000,
      }),
    );
    assertEquals(late.applied, false);
    assertEquals(late.reason, "organization_deleted");
    assertEquals(await seatOf(ctx, org, c), null);
  },
);

dbTest(
  "events arriving out of order: an older event than one applied changes nothing",
  async (ctx) => {
    const org = unique("org");
    const user = unique("user");
    const t0 = Date.now() - 60_000;
    await deliver(
      ctx,
      membershipEvent("organizationMembership.created", org, "Acme", user, "org:member", {
        timestamp: t0,
      }),
    );
    await deliver(
      ctx,
      membershipEvent("organizationMembership.deleted", org, "Acme", user, "org:member", {
        timestamp: t0 + 2000,
      }),
    );
    // A retried .updated from before the deletion arrives last.
    const stale = await deliver(
      ctx,
      membershipEvent("organizationMembership.updated", org, "Acme", user, "org:admin", {
        timestamp: t0 + 1000,
      }),
    );
    assertEquals(stale.applied, false);
    assertEquals(stale.outcome, "stale");
    assertEquals(await seatOf(ctx, org, user), {
      role: "member",
      status: "revoked",
      email: `${user}@example.org`,
    });
  },
);

dbTest(
  "a re-added member (new membership after deletion) gets an active seat again",
  async (ctx) => {
    const org = unique("org");
    const user = unique("user");
    const t0 = Date.now() - 60_000;
    const ev = (type: Parameters<typeof membershipEvent>[0], ts: number) =>
      membershipEvent(type, org, "Acme", user, "org:member", { timestamp: ts });
    await deliver(ctx, ev("organizationMembership.created", t0));
    await deliver(ctx, ev("organizationMembership.deleted", t0 + 1000));
    assertEquals((await seatOf(ctx, org, user))?.status, "revoked");
    await deliver(ctx, ev("organizationMembership.created", t0 + 2000));
    assertEquals((await seatOf(ctx, org, user))?.status, "active");
  },
);

dbTest("an unhandled event type is acknowledged and recorded as ignored", async (ctx) => {
  const id = unique("msg");
  const result = await deliver(ctx, {
    type: "session.created",
    object: "event",
    data: { id: "sess_1" },
  }, {
    id,
  });
  assertEquals(result.applied, false);
  assertEquals(result.duplicate, false);
  assertEquals(result.outcome, "ignored");
  assertEquals(result.reason, "unhandled_type");
  assertEquals(await eventRows(ctx, id), 1);
});

dbTest("user events answer what they revoked, as numbers", async (ctx) => {
  const user = unique("user");
  const userEvent = (type: string, data: Record<string, unknown>) => ({
    type,
    object: "event",
    timestamp: Date.now(),
    data: { id: user, object: "user", ...data },
  });
  const banned = await deliver(ctx, userEvent("user.updated", { banned: true }));
  assertEquals(banned.applied, true);
  assertEquals(banned.clerk_user_id, user);
  assertEquals(banned.extension_tokens_revoked, 0);
  assertEquals(banned.refresh_tokens_revoked, 0);
  assertEquals(banned.seats_revoked, null);
  const deleted = await deliver(ctx, userEvent("user.deleted", { deleted: true }));
  assertEquals(deleted.applied, true);
  assertEquals(deleted.seats_revoked, 0);
  assertEquals(deleted.extension_tokens_revoked, 0);
  assert(typeof deleted.user_id === "string");
});

dbTest("bad signatures are refused with 401 and nothing is written", async (ctx) => {
  const deps = await depsFor(ctx);
  const org = unique("org");
  const body = JSON.stringify(organizationEvent("organization.created", org, "Forged"));
  const now = Math.floor(Date.now() / 1000);

  const cases: [string, Request][] = [
    [
      "tampered body",
      await svixRequest(SECRET, body.replace("Forged", "Forged2"), {
        id: "msg_t",
        signature: await svixSignature(SECRET, "msg_t", now, body),
      }),
    ],
    [
      "re-serialized body",
      await svixRequest(SECRET, JSON.stringify(JSON.parse(body), null, 1), {
        id: "msg_r",
        signature: await svixSignature(SECRET, "msg_r", now, body),
      }),
    ],
    ["old timestamp", await svixRequest(SECRET, body, { id: "msg_o", timestamp: now - 301 })],
    ["other secret", await svixRequest(newWebhookSecret(), body, { id: "msg_s" })],
    ["no signature headers", new Request("http://localhost/", { method: "POST", body })],
  ];
  for (const [what, request] of cases) {
    const response = await handleClerkWebhook(request, deps);
    const json = await expectJson(response, 401);
    assertEquals(json.error, "invalid_signature", what);
  }
  assertEquals(await orgName(ctx, org), null);
  for (const id of ["msg_t", "msg_r", "msg_o", "msg_s"]) assertEquals(await eventRows(ctx, id), 0);
});

dbTest(
  "a verified body that is not a usable Clerk event is a 400, not a retry loop",
  async (ctx) => {
    const deps = await depsFor(ctx);
    const notJson = await handleClerkWebhook(await svixRequest(SECRET, "not json"), deps);
    assertEquals((await expectJson(notJson, 400)).error, "invalid_event");
    const noOrgId = await handleClerkWebhook(
      await svixRequest(
        SECRET,
        JSON.stringify({ type: "organization.created", data: { name: "x" } }),
      ),
      deps,
    );
    const json = await expectJson(noOrgId, 400);
    assertEquals(json.error, "invalid_event");
    assert(String(json.error_description).includes("p_event.data.id"));
  },
);

Deno.test("only POST is accepted", async () => {
  const deps: WebhookDeps = {
    rpc: undefined as never,
    signingKey: await importSigningSecret(SECRET),
    log: silent,
  };
  const response = await handleClerkWebhook(
    new Request("http://localhost/", { method: "GET" }),
    deps,
  );
  assertEquals(response.status, 405);
  assertEquals(response.headers.get("allow"), "POST");
  await response.body?.cancel();
});

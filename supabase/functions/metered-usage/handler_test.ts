/**
 * metered-usage against the real test database: our tokens (HS256) in,
 * deduct_credits_pooled through the service-role connection, HTTP out.
 */

import { assertEquals, expectJson } from "../_shared/assert.ts";
import { sha256Hex } from "../_shared/bytes.ts";
import { createVerifier } from "../_shared/jwt.ts";
import type { CreditsRpc } from "../_shared/rpc.ts";
import {
  createOrg,
  createSeat,
  createUser,
  type DbContext,
  HMAC_SECRET,
  mintHs256,
  type MintOptions,
  NO_DB,
  type OrgFixture,
  personalBalance,
  poolBalance,
  unique,
  withDb,
} from "../_shared/test_support.ts";
import { handleUsage, type UsageDeps } from "./handler.ts";

const verifier = createVerifier({ hmacSecret: HMAC_SECRET });
const silent = () => {};

function deps(rpc: CreditsRpc): UsageDeps {
  return { rpc, verifier, log: silent };
}

function usageRequest(
  token: string | null,
  body: unknown,
  headers: Record<string, string> = {},
): Request {
  const h: Record<string, string> = { "content-type": "application/json", ...headers };
  if (token !== null) h.authorization = `Bearer ${token}`;
  return new Request("http://localhost/functions/v1/metered-usage", {
    method: "POST",
    headers: h,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

interface Member {
  clerkUserId: string;
  userId: string;
  seatId: string;
  org: OrgFixture;
}

async function member(
  ctx: DbContext,
  options: { pool?: number; personal?: number; seat?: string; subscription?: string | null } = {},
): Promise<Member> {
  const clerkUserId = unique("user");
  const userId = await createUser(ctx.sql, clerkUserId, options.personal ?? 0);
  const org = await createOrg(
    ctx.sql,
    "Acme Inc",
    options.pool ?? 100,
    options.subscription === undefined ? "active" : options.subscription,
  );
  const seatId = await createSeat(ctx.sql, org, userId, options.seat ?? "active");
  return { clerkUserId, userId, seatId, org };
}

const orgToken = (m: Member, options: MintOptions = {}) =>
  mintHs256(m.clerkUserId, { org: { fixture: m.org, seatId: m.seatId }, ...options });

const dbTest = (name: string, fn: (ctx: DbContext) => Promise<void>) =>
  Deno.test({ name, ignore: NO_DB, fn: () => withDb(fn) });

dbTest("200: an org token spends from the org pool", async (ctx) => {
  const m = await member(ctx, { pool: 100, personal: 7 });
  const response = await handleUsage(
    usageRequest(await orgToken(m), { amount: 2.5, description: "completion" }),
    deps(ctx.rpc),
  );
  const json = await expectJson(response, 200);
  assertEquals(json.ok, true);
  assertEquals(json.pool, "organization");
  assertEquals(json.remaining, 97.5);
  assertEquals(json.replayed, false);
  assertEquals(typeof json.transaction_id, "string");
  assertEquals(await poolBalance(ctx.sql, m.org), "97.5000");
  assertEquals(await personalBalance(ctx.sql, m.clerkUserId), "7.0000");
});

dbTest("200: a personal token spends personal credits", async (ctx) => {
  const user = unique("user");
  await createUser(ctx.sql, user, 10);
  const response = await handleUsage(
    usageRequest(await mintHs256(user), { amount: "1.25", description: "completion" }),
    deps(ctx.rpc),
  );
  const json = await expectJson(response, 200);
  assertEquals(json.pool, "personal");
  assertEquals(json.remaining, 8.75);
  assertEquals(await personalBalance(ctx.sql, user), "8.7500");
});

dbTest("the org comes from the token only: a clerk_org_id in the body is ignored", async (ctx) => {
  const m = await member(ctx, { pool: 50, personal: 50 });
  const other = await createOrg(ctx.sql, "Other Org", 50);
  // A personal token naming an org in the body spends personal credits.
  const personal = await handleUsage(
    usageRequest(await mintHs256(m.clerkUserId), {
      amount: 1,
      description: "x",
      clerk_org_id: m.org.clerkOrgId,
    }),
    deps(ctx.rpc),
  );
  assertEquals((await expectJson(personal, 200)).pool, "personal");
  // An org token naming another org in the body spends its own org's pool.
  const org = await handleUsage(
    usageRequest(await orgToken(m), {
      amount: 1,
      description: "x",
      clerk_org_id: other.clerkOrgId,
    }),
    deps(ctx.rpc),
  );
  assertEquals((await expectJson(org, 200)).pool, "organization");
  assertEquals(await poolBalance(ctx.sql, m.org), "49.0000");
  assertEquals(await poolBalance(ctx.sql, other), "50.0000");
  assertEquals(await personalBalance(ctx.sql, m.clerkUserId), "49.0000");
});

dbTest("Idempotency-Key is forwarded: a retry is charged once and says replayed", async (ctx) => {
  const m = await member(ctx, { pool: 10 });
  const token = await orgToken(m);
  const key = unique("idem");
  const call = (amount: number) =>
    handleUsage(
      usageRequest(token, { amount, description: "completion" }, { "Idempotency-Key": key }),
      deps(ctx.rpc),
    );
  const first = await expectJson(await call(3), 200);
  const second = await expectJson(await call(3), 200);
  assertEquals(first.replayed, false);
  assertEquals(second.replayed, true);
  assertEquals(second.transaction_id, first.transaction_id);
  assertEquals(await poolBalance(ctx.sql, m.org), "7.0000");
  // The same key with other arguments is a conflict.
  const conflict = await expectJson(await call(4), 409);
  assertEquals(conflict.error, "idempotency_key_reused");
  const [row] = await ctx.sql<{ k: string }[]>`
    select idempotency_key as k from public.credit_transactions where id = ${first
    .transaction_id as string}`;
  assertEquals(row.k, key);
});

dbTest("402: the org pool is short; personal credits are never touched", async (ctx) => {
  const m = await member(ctx, { pool: 1, personal: 1000 });
  const response = await handleUsage(
    usageRequest(await orgToken(m), { amount: 5, description: "big" }),
    deps(ctx.rpc),
  );
  assertEquals(await expectJson(response, 402), {
    error: "insufficient_credits",
    pool: "organization",
    organization_name: "Acme Inc",
  });
  assertEquals(await poolBalance(ctx.sql, m.org), "1.0000");
  assertEquals(await personalBalance(ctx.sql, m.clerkUserId), "1000.0000");
});

dbTest("402 on personal credits names no organization", async (ctx) => {
  const user = unique("user");
  await createUser(ctx.sql, user, 1);
  const response = await handleUsage(
    usageRequest(await mintHs256(user), { amount: 2, description: "x" }),
    deps(ctx.rpc),
  );
  assertEquals(await expectJson(response, 402), {
    error: "insufficient_credits",
    pool: "personal",
    organization_name: null,
  });
});

dbTest("403: a seat suspended or revoked after the token was minted cannot spend", async (ctx) => {
  for (const status of ["suspended", "revoked", "pending"]) {
    const m = await member(ctx, { pool: 100 });
    const token = await orgToken(m);
    await ctx.sql`update public.organization_seats set status = ${status} where id = ${m.seatId}`;
    const response = await handleUsage(
      usageRequest(token, { amount: 1, description: "x" }),
      deps(ctx.rpc),
    );
    assertEquals(
      await expectJson(response, 403),
      { error: "no_active_seat", pool: "organization" },
      status,
    );
    assertEquals(await poolBalance(ctx.sql, m.org), "100.0000");
  }
});

dbTest("403: a subscription that may not spend", async (ctx) => {
  for (const subscription of ["past_due", "canceled", null]) {
    const m = await member(ctx, { pool: 100, subscription });
    const response = await handleUsage(
      usageRequest(await orgToken(m), { amount: 1, description: "x" }),
      deps(ctx.rpc),
    );
    assertEquals(
      await expectJson(response, 403),
      { error: "no_active_subscription", pool: "organization" },
      String(subscription),
    );
  }
});

dbTest("401: missing, malformed, badly signed, expired tokens and the wrong type", async (ctx) => {
  const m = await member(ctx);
  const body = { amount: 1, description: "x" };
  const now = Math.floor(Date.now() / 1000);
  const cases: [string, Request][] = [
    ["no header", usageRequest(null, body)],
    ["not bearer", usageRequest(null, body, { authorization: `Basic ${btoa("a:b")}` })],
    ["garbage", usageRequest("not.a.token", body)],
    ["other secret", usageRequest(await orgToken(m, { secret: "x".repeat(40) }), body)],
    ["expired", usageRequest(await orgToken(m, { now: now - 3600, ttl: 600 }), body)],
    ["wrong audience", usageRequest(await orgToken(m, { overrides: { aud: "dashboard" } }), body)],
    ["wrong type", usageRequest(await orgToken(m, { overrides: { type: "refresh" } }), body)],
  ];
  for (const [what, request] of cases) {
    const response = await handleUsage(request, deps(ctx.rpc));
    assertEquals(response.status, 401, what);
    assertEquals(response.headers.get("www-authenticate")?.startsWith("Bearer"), true, what);
    // RFC 6750 §3.1 (R3): no error code in the challenge when no credentials were sent.
    assertEquals(
      response.headers.get("www-authenticate")?.includes("error="),
      what !== "no header" && what !== "not bearer",
      what,
    );
    assertEquals((await response.json()).error, "invalid_token", what);
  }
  assertEquals(await poolBalance(ctx.sql, m.org), "100.0000");
});

dbTest("long-lived tokens: accepted while stored, 401 once revoked (T7)", async (ctx) => {
  const m = await member(ctx, { pool: 10 });
  const token = await orgToken(m, { type: "extension_long_lived" });
  const body = { amount: 1, description: "x" };

  // Signed correctly but never stored: refused.
  const unknown = await handleUsage(usageRequest(token, body), deps(ctx.rpc));
  assertEquals((await expectJson(unknown, 401)).error_description, "revoked");

  const [{ id }] = await ctx.sql<{ id: string }[]>`
    select public.create_extension_token(${m.clerkUserId}, ${await sha256Hex(token)}, 'Laptop',
      now() + interval '1 day', ${m.org.clerkOrgId}) as id`;
  const ok = await handleUsage(usageRequest(token, body), deps(ctx.rpc));
  assertEquals((await expectJson(ok, 200)).pool, "organization");

  await ctx.sql`select public.revoke_extension_token(${id}, ${m.clerkUserId})`;
  const revoked = await handleUsage(usageRequest(token, body), deps(ctx.rpc));
  assertEquals((await expectJson(revoked, 401)).error_description, "revoked");
  assertEquals(await poolBalance(ctx.sql, m.org), "9.0000");
});

dbTest("400: bad amounts and bodies; the RPC's 22023 message is passed on", async (ctx) => {
  const m = await member(ctx);
  const token = await orgToken(m);
  const call = (body: unknown) => handleUsage(usageRequest(token, body), deps(ctx.rpc));

  for (const amount of [0, -1, 1e13, 0.00001, "-0.5"]) {
    const json = await expectJson(await call({ amount, description: "x" }), 400);
    assertEquals(json.error, "invalid_request", String(amount));
    assertEquals(
      String(json.error_description).startsWith("p_amount"),
      true,
      String(json.error_description),
    );
  }
  // F5: the issuer's rule of a valid amount (no exponent, ASCII digits only).
  for (const amount of [null, true, "ten", "NaN", "Infinity", [1], "1e3", "\u0663", " 1"]) {
    const json = await expectJson(await call({ amount, description: "x" }), 400);
    assertEquals(json.error_description, "amount must be a number", String(amount));
  }
  const empty = await expectJson(await call({ amount: 1, description: "" }), 400);
  assertEquals(empty.error_description, "p_description must not be empty");
  const context = await expectJson(await call({ amount: 1, description: "x", context: [1] }), 400);
  assertEquals(
    String(context.error_description).startsWith("p_context must be a JSON object"),
    true,
  );
  assertEquals((await expectJson(await call("{not json"), 400)).error, "invalid_request");
  assertEquals((await expectJson(await call([1, 2]), 400)).error, "invalid_request");
  const longKey = await handleUsage(
    usageRequest(token, { amount: 1, description: "x" }, { "Idempotency-Key": "k".repeat(201) }),
    deps(ctx.rpc),
  );
  assertEquals(
    (await expectJson(longKey, 400)).error_description,
    "p_idempotency_key must be at most 200 characters",
  );
  assertEquals(await poolBalance(ctx.sql, m.org), "100.0000");
});

dbTest("403: a token for a user or organization the database does not know", async (ctx) => {
  const ghost = await handleUsage(
    usageRequest(await mintHs256(unique("user_ghost")), { amount: 1, description: "x" }),
    deps(ctx.rpc),
  );
  assertEquals(await expectJson(ghost, 403), { error: "unknown_user", pool: "personal" });
});

Deno.test("405 for anything but POST; 413 for an oversized body", async () => {
  const d = deps(undefined as never);
  const get = await handleUsage(new Request("http://localhost/", { method: "GET" }), d);
  assertEquals(get.status, 405);
  await get.body?.cancel();
  const big = await handleUsage(
    usageRequest(await mintHs256("user_x"), { amount: 1, description: "x".repeat(70_000) }),
    d,
  );
  assertEquals(big.status, 413);
  await big.body?.cancel();
});

Deno.test("503 (retryable) when the database cannot be reached", async () => {
  const { PostgresRpc } = await import("../_shared/rpc.ts");
  // Nothing listens on port 1: the connection is refused at once.
  const rpc = new PostgresRpc("postgresql://postgres@127.0.0.1:1/postgres");
  try {
    const response = await handleUsage(
      usageRequest(await mintHs256("user_x"), { amount: 1, description: "x" }),
      deps(rpc),
    );
    assertEquals(response.status, 503);
    assertEquals(response.headers.get("retry-after"), "1");
    assertEquals((await response.json()).error, "database_unavailable");
  } finally {
    await rpc.close();
  }
});

/**
 * The RPC interface: choosing a backend from the environment, the direct
 * connection running as service_role, and the supabase-js backend against
 * the PostgREST double (py/tests/support/postgrest_double.py: a stand-in
 * for PostgREST's RPC endpoint that runs each call in the real test
 * database, because no PostgREST binary can be installed here), passed in
 * as POSTGREST_URL and SUPABASE_SERVICE_ROLE_KEY by the pytest runner.
 */

import { assert, assertEquals, assertRejects } from "./assert.ts";
import { sha256Hex } from "./bytes.ts";
import { PostgresRpc, RpcError, rpcFromEnv, SupabaseRpc } from "./rpc.ts";
import {
  createOrg,
  createSeat,
  createUser,
  DB_URL,
  NO_DB,
  organizationEvent,
  poolBalance,
  unique,
  withDb,
} from "./test_support.ts";

const env = (vars: Record<string, string>) => ({ get: (name: string) => vars[name] });

Deno.test("rpcFromEnv: a database URL selects the direct connection", async () => {
  const rpc = rpcFromEnv(env({ SUPABASE_DB_URL: "postgresql://u@127.0.0.1:1/db" }));
  assert(rpc instanceof PostgresRpc);
  await rpc.close();
  const both = rpcFromEnv(env({
    DATABASE_URL: "postgresql://u@127.0.0.1:1/db",
    SUPABASE_URL: "http://127.0.0.1:1",
    SUPABASE_SERVICE_ROLE_KEY: "k",
  }));
  assert(both instanceof PostgresRpc);
  await both.close();
});

Deno.test("rpcFromEnv: SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY select supabase-js", () => {
  assert(
    rpcFromEnv(
      env({ SUPABASE_URL: "http://127.0.0.1:1", SUPABASE_SERVICE_ROLE_KEY: "k" }),
    ) instanceof
      SupabaseRpc,
  );
  assert(
    rpcFromEnv(env({
      RPC_BACKEND: "supabase",
      SUPABASE_DB_URL: "postgresql://u@127.0.0.1:1/db",
      SUPABASE_URL: "http://127.0.0.1:1",
      SUPABASE_SERVICE_ROLE_KEY: "k",
    })) instanceof SupabaseRpc,
  );
});

Deno.test("rpcFromEnv: nothing configured, or a bad RPC_BACKEND, names the variables", () => {
  const message = (vars: Record<string, string>) => {
    try {
      rpcFromEnv(env(vars));
    } catch (err) {
      return (err as Error).message;
    }
    return "";
  };
  assert(message({}).includes("SUPABASE_DB_URL"));
  assert(message({ SUPABASE_URL: "http://x" }).includes("SUPABASE_SERVICE_ROLE_KEY"));
  assertEquals(message({ RPC_BACKEND: "grpc" }), "RPC_BACKEND must be 'postgres' or 'supabase'");
});

Deno.test({
  name: "the direct connection runs as service_role: another role is refused by the grants",
  ignore: NO_DB,
  fn: async () => {
    const asAuthenticated = new PostgresRpc(DB_URL!, { role: "authenticated" });
    try {
      const err = await assertRejects(
        () => asAuthenticated.applyClerkEvent(unique("msg"), '{"type":"x","data":{}}'),
        RpcError,
      );
      assertEquals((err as RpcError).code, "42501");
      assertEquals((err as RpcError).retryable, false);
    } finally {
      await asAuthenticated.close();
    }
    await withDb(async ({ rpc }) => {
      const result = await rpc.applyClerkEvent(unique("msg"), '{"type":"x","data":{}}');
      assertEquals(result.outcome, "ignored");
    });
  },
});

Deno.test({
  name:
    "validate_extension_token's composite: a live token is its row, a refusal (ok false) is null",
  ignore: NO_DB,
  fn: async () => {
    await withDb(async ({ rpc, sql }) => {
      const user = unique("user");
      const hash = await sha256Hex(unique("ext-token"));
      const [{ id }] = await sql<{ id: string }[]>`
        select public.create_extension_token(
          ${user}, ${hash}, 'Laptop', now() + interval '1 day', null, ${unique("jti")}
        ) as id`;
      const row = await rpc.validateExtensionToken(hash);
      assertEquals([row?.ok, row?.id, row?.clerk_user_id, row?.clerk_org_id], [
        true,
        id,
        user,
        null,
      ]);
      assertEquals(await rpc.validateExtensionToken(await sha256Hex(unique("unknown"))), null);
      await sql`select public.revoke_extension_token(${id}::uuid, ${user})`;
      assertEquals(await rpc.validateExtensionToken(hash), null);
    });
  },
});

const POSTGREST_URL = Deno.env.get("POSTGREST_URL");
const SERVICE_ROLE_KEY = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");

Deno.test({
  name: "supabase-js backend (through the PostgREST double): deduct, replay, 22023, events",
  ignore: NO_DB || !POSTGREST_URL || !SERVICE_ROLE_KEY,
  fn: async () => {
    const rpc = new SupabaseRpc(POSTGREST_URL!, SERVICE_ROLE_KEY!);
    await withDb(async ({ sql }) => {
      const user = unique("user");
      const userId = await createUser(sql, user);
      const org = await createOrg(sql, "Acme Inc", 10);
      await createSeat(sql, org, userId);
      const args = {
        clerkUserId: user,
        amount: "2.5",
        description: "completion",
        clerkOrgId: org.clerkOrgId,
        idempotencyKey: unique("idem"),
        context: { model: "m" },
      };
      const first = await rpc.deductCreditsPooled(args);
      assertEquals(first.ok, true);
      assertEquals(first.pool, "organization");
      assertEquals(Number(first.balance), 7.5);
      const replay = await rpc.deductCreditsPooled(args);
      assertEquals(replay.replayed, true);
      assertEquals(await poolBalance(sql, org), "7.5000");

      const short = await rpc.deductCreditsPooled({ ...args, amount: "100", idempotencyKey: null });
      assertEquals([short.ok, short.reason], [false, "insufficient_credits"]);

      const bad = await assertRejects(
        () => rpc.deductCreditsPooled({ ...args, amount: "0", idempotencyKey: null }),
        RpcError,
      );
      assertEquals((bad as RpcError).code, "22023");
      assert((bad as RpcError).message.startsWith("p_amount"));
      const conflict = await assertRejects(
        () => rpc.deductCreditsPooled({ ...args, amount: "3" }),
        RpcError,
      );
      assertEquals((conflict as RpcError).code, "23505");

      const clerkOrg = unique("org");
      const id = unique("msg");
      const event = JSON.stringify(
        organizationEvent("organization.created", clerkOrg, "Via PostgREST"),
      );
      assertEquals((await rpc.applyClerkEvent(id, event)).applied, true);
      assertEquals((await rpc.applyClerkEvent(id, event)).duplicate, true);
      assertEquals(await rpc.validateExtensionToken("0".repeat(64)), null);
    });
  },
});

Deno.test("supabase-js backend: an unreachable PostgREST is retryable", async () => {
  const rpc = new SupabaseRpc("http://127.0.0.1:1", "key");
  const err = await assertRejects(() => rpc.validateExtensionToken("0".repeat(64)), RpcError);
  assertEquals((err as RpcError).retryable, true);
});

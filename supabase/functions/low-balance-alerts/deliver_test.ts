/**
 * H3 delivery against the real test database and a local HTTP receiver that
 * fails the first attempt and accepts the second: one alert, two attempts,
 * the same Idempotency-Key both times, delivered once and never again.
 */

import { assert, assertEquals } from "../_shared/assert.ts";
import { adminSql, NO_DB } from "../_shared/test_support.ts";
import { deliverDueAlerts, PostgresAlertOutbox } from "./deliver.ts";
import { alertingOrg, LOCAL_RECEIVERS } from "./test_receivers.ts";

Deno.test({
  name: "H3: a failed POST is retried with the same alert id and delivered exactly once",
  ignore: NO_DB,
  async fn() {
    const seen: { key: string | null; attempt: string | null; body: Record<string, unknown> }[] =
      [];
    const receiver = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
      seen.push({
        key: req.headers.get("idempotency-key"),
        attempt: req.headers.get("x-alert-attempt"),
        body: await req.json(),
      });
      return new Response(null, { status: seen.length === 1 ? 503 : 204 });
    });
    const sql = adminSql();
    const outbox = new PostgresAlertOutbox(Deno.env.get("DATABASE_URL")!);
    try {
      const org = await alertingOrg(sql, `http://127.0.0.1:${receiver.addr.port}/hook`);
      // A receiver on 127.0.0.1 counts as public only under the test policy (H6).
      const options = { limit: 100, addressPolicy: LOCAL_RECEIVERS };

      const first = await deliverDueAlerts(outbox, options);
      assert(first.failed >= 1, JSON.stringify(first));
      const [row] = await sql<{ id: string; attempts: number; last_error: string }[]>`
        select id::text, attempts, last_error from public.low_balance_alerts
        where organization_id = ${org.organizationId}`;
      assertEquals([row.attempts, row.last_error], [1, "http_5xx"]);

      // Not due yet (backoff): nothing is sent.
      await deliverDueAlerts(outbox, options);
      assertEquals(seen.length, 1);

      // Time passes: due again, delivered.
      await sql`update public.low_balance_alerts set next_attempt_at = now()
        where id = ${row.id}::uuid`;
      const second = await deliverDueAlerts(outbox, options);
      assert(second.delivered >= 1, JSON.stringify(second));
      const ours = seen.filter((s) => s.key === row.id);
      assertEquals(ours.map((s) => s.attempt), ["1", "2"]);
      assertEquals(ours[1].body.threshold, 50);
      assertEquals(ours[1].body.balance_after, 40);
      assertEquals(ours[1].body.clerk_org_id, org.clerkOrgId);

      // Delivered: never sent again, even when it looks due.
      await sql`update public.low_balance_alerts set next_attempt_at = now()
        where id = ${row.id}::uuid`;
      await deliverDueAlerts(outbox, options);
      assertEquals(seen.filter((s) => s.key === row.id).length, 2);
      const [done] = await sql<{ delivered: boolean }[]>`
        select delivered_at is not null as delivered from public.low_balance_alerts
        where id = ${row.id}::uuid`;
      assertEquals(done.delivered, true);
    } finally {
      await outbox.close();
      await sql.end({ timeout: 5 });
      await receiver.shutdown();
    }
  },
});

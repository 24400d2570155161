/**
 * H6 against the real test database and receivers on 127.0.0.1: the default
 * policy refuses a loopback webhook without connecting; with LOCAL_RECEIVERS
 * (loopback counted as public, test_receivers.ts) a slow receiver is a
 * timeout, a redirect is an outcome and never followed, one org's slow
 * webhook does not delay another's, and no POST outlives its lease.
 */

import { assert, assertEquals } from "../_shared/assert.ts";
import { adminSql, NO_DB } from "../_shared/test_support.ts";
import { deliverDueAlerts, PostgresAlertOutbox } from "./deliver.ts";
import { alertingOrg, alertRow, LOCAL_RECEIVERS, receiver, sleep } from "./test_receivers.ts";

function withOutbox(
  fn: (sql: ReturnType<typeof adminSql>, outbox: PostgresAlertOutbox) => Promise<void>,
): () => Promise<void> {
  return async () => {
    const sql = adminSql();
    const outbox = new PostgresAlertOutbox(Deno.env.get("DATABASE_URL")!);
    try {
      await fn(sql, outbox);
    } finally {
      await outbox.close();
      await sql.end({ timeout: 5 });
    }
  };
}

Deno.test({
  name: "H6: a webhook on 127.0.0.1 is refused by default, never connected to",
  ignore: NO_DB,
  fn: withOutbox(async (sql, outbox) => {
    const local = receiver(() => new Response(null, { status: 401 }));
    try {
      const https = await alertingOrg(sql, local.url("/internal").replace("http:", "https:"));
      const http = await alertingOrg(sql, local.url("/internal"));
      const short = await alertingOrg(sql, "https://127.1:5432/");
      const mapped = await alertingOrg(sql, "https://[::ffff:127.0.0.1]/");
      const named = await alertingOrg(sql, "https://localhost./admin");
      await deliverDueAlerts(outbox, { limit: 100 });
      assertEquals(local.hits(), 0);
      for (const org of [https, http, short, mapped, named]) {
        const row = await alertRow(sql, org);
        assertEquals([row.last_outcome, row.last_error], ["refused_address", "refused_address"]);
      }
    } finally {
      await local.close();
    }
  }),
});

Deno.test({
  name: "H6: an admin reads a category, not the remote's text",
  ignore: NO_DB,
  fn: withOutbox(async (sql, outbox) => {
    const local = receiver(() => new Response("secret internal banner", { status: 401 }));
    try {
      const org = await alertingOrg(sql, local.url("/hook"));
      await deliverDueAlerts(outbox, { limit: 100, addressPolicy: LOCAL_RECEIVERS });
      assertEquals(local.hits(), 1);
      const row = await alertRow(sql, org);
      assertEquals([row.last_outcome, row.last_error], ["http_4xx", "http_4xx"]);
    } finally {
      await local.close();
    }
  }),
});

Deno.test({
  name: "H6: a slow webhook is a timeout, bounded by timeoutMs",
  ignore: NO_DB,
  fn: withOutbox(async (sql, outbox) => {
    const slow = receiver(async () => {
      await sleep(1500);
      return new Response(null, { status: 204 });
    });
    try {
      const org = await alertingOrg(sql, slow.url("/hook"));
      const started = Date.now();
      await deliverDueAlerts(outbox, {
        limit: 100,
        timeoutMs: 300,
        addressPolicy: LOCAL_RECEIVERS,
      });
      assert(Date.now() - started < 1200, `the run took ${Date.now() - started} ms`);
      const row = await alertRow(sql, org);
      assertEquals([row.last_outcome, row.leased], ["timeout", false]);
    } finally {
      await slow.close();
    }
  }),
});

Deno.test({
  name: "H6: a redirect is an outcome, never followed",
  ignore: NO_DB,
  fn: withOutbox(async (sql, outbox) => {
    const target = receiver(() => new Response(null, { status: 204 }));
    const redirecting = receiver(() =>
      new Response(null, { status: 307, headers: { location: target.url("/internal") } })
    );
    try {
      const org = await alertingOrg(sql, redirecting.url("/hook"));
      await deliverDueAlerts(outbox, { limit: 100, addressPolicy: LOCAL_RECEIVERS });
      assertEquals([redirecting.hits(), target.hits()], [1, 0]);
      assertEquals((await alertRow(sql, org)).last_outcome, "http_3xx");
    } finally {
      await redirecting.close();
      await target.close();
    }
  }),
});

Deno.test({
  name: "H6: one org's slow webhook does not delay another org's alert",
  ignore: NO_DB,
  fn: withOutbox(async (sql, outbox) => {
    let fastSeenAfter = -1;
    let started = 0;
    const slow = receiver(async () => {
      await sleep(1500);
      return new Response(null, { status: 204 });
    });
    const fast = receiver(() => {
      fastSeenAfter = Date.now() - started;
      return new Response(null, { status: 204 });
    });
    try {
      // The slow org's alert is older: a run in order would post it first.
      const slowOrg = await alertingOrg(sql, slow.url("/hook"));
      const fastOrg = await alertingOrg(sql, fast.url("/hook"));
      started = Date.now();
      await deliverDueAlerts(outbox, {
        limit: 100,
        timeoutMs: 800,
        addressPolicy: LOCAL_RECEIVERS,
      });
      assert(
        fastSeenAfter >= 0 && fastSeenAfter < 500,
        `fast org posted after ${fastSeenAfter} ms`,
      );
      assertEquals((await alertRow(sql, fastOrg)).last_outcome, "delivered");
      assertEquals((await alertRow(sql, slowOrg)).last_outcome, "timeout");
    } finally {
      await slow.close();
      await fast.close();
    }
  }),
});

Deno.test({
  name: "H6: a POST never outlives its lease, so no second run posts the alert meanwhile",
  ignore: NO_DB,
  fn: withOutbox(async (sql, outbox) => {
    const slow = receiver(async () => {
      await sleep(2500);
      return new Response(null, { status: 204 });
    });
    try {
      const org = await alertingOrg(sql, slow.url("/hook"));
      const started = Date.now();
      // timeoutMs is longer than the lease: the lease wins.
      await deliverDueAlerts(outbox, {
        limit: 100,
        leaseSeconds: 2,
        leaseMarginMs: 1000,
        timeoutMs: 10_000,
        addressPolicy: LOCAL_RECEIVERS,
      });
      const took = Date.now() - started;
      assert(took < 2000, `the run took ${took} ms, past its 2 s lease`);
      const row = await alertRow(sql, org);
      assertEquals([row.attempts, row.last_outcome, row.leased], [1, "timeout", false]);
      assertEquals(slow.hits(), 1);
    } finally {
      await slow.close();
    }
  }),
});

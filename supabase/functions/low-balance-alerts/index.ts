/**
 * Entry point of the `low-balance-alerts` Edge Function: one delivery run per
 * request (schedule it with pg_cron + pg_net every minute; docs/operations.md).
 * `verify_jwt = true` in supabase/config.toml: only a caller holding a key of
 * the project (the cron job's service key) may trigger a run.
 *
 * Secrets: the database through SUPABASE_DB_URL (set by Supabase).
 */

import { deliverDueAlerts, PostgresAlertOutbox } from "./deliver.ts";

const url = Deno.env.get("SUPABASE_DB_URL") ?? Deno.env.get("DATABASE_URL");

Deno.serve(async (req) => {
  if (req.method !== "POST") {
    return Response.json({ error: "method_not_allowed" }, { status: 405 });
  }
  if (!url) {
    return Response.json({ error: "database_unavailable" }, { status: 503 });
  }
  const outbox = new PostgresAlertOutbox(url);
  try {
    return Response.json(await deliverDueAlerts(outbox));
  } catch (err) {
    console.error("low-balance-alerts: run failed", err);
    return Response.json({ error: "database_unavailable" }, { status: 503 });
  } finally {
    await outbox.close();
  }
});

/**
 * Test support for the alert deliverer (not a test file itself).
 *
 * `LOCAL_RECEIVERS` is the strict policy except that http and 127.0.0.1 count
 * as public: tests run their receivers on 127.0.0.1 and need them reachable.
 * Production never passes it: `deliverDueAlerts` defaults to STRICT_POLICY.
 *
 * `alertingOrg` makes an org whose pool just crossed a threshold, with its
 * webhook row written directly (as the superuser): the store-time rule of
 * H6 would refuse a local http URL, and is tested by sql/tests/32.
 */

import type postgres from "postgres";
import { createOrg, createSeat, createUser, unique } from "../_shared/test_support.ts";
import { type AddressPolicy, isPublicAddress, STRICT_POLICY } from "./address_policy.ts";

export const LOCAL_RECEIVERS: AddressPolicy = {
  ...STRICT_POLICY,
  allowHttp: true,
  isPublic: (address) => address === "127.0.0.1" || isPublicAddress(address),
};

export interface AlertingOrg {
  organizationId: string;
  clerkOrgId: string;
}

/** An org with threshold 50 whose pool went 100 -> 40 (one due alert), POSTing to `url`. */
export async function alertingOrg(sql: postgres.Sql, url: string): Promise<AlertingOrg> {
  const org = await createOrg(sql, "Alerted Inc", 100);
  const user = unique("user");
  await createSeat(sql, org, await createUser(sql, user));
  await sql`select public.set_low_balance_thresholds_as(null,
    ${org.organizationId}::uuid, array[50]::numeric[], null)`;
  await sql`insert into public.organization_alert_webhooks (organization_id, url)
    values (${org.organizationId}::uuid, ${url})`;
  await sql`select public.deduct_credits_pooled(
    p_clerk_user_id => ${user}, p_amount => 60, p_description => 'big completion',
    p_clerk_org_id => ${org.clerkOrgId})`;
  return { organizationId: org.organizationId, clerkOrgId: org.clerkOrgId };
}

/** The org's alert as an admin reads it. */
export async function alertRow(
  sql: postgres.Sql,
  org: AlertingOrg,
): Promise<
  { attempts: number; last_outcome: string | null; last_error: string | null; leased: boolean }
> {
  const [row] = await sql<
    { attempts: number; last_outcome: string | null; last_error: string | null; leased: boolean }[]
  >`
    select attempts, last_outcome, last_error,
      coalesce(claimed_until > now(), false) as leased
    from public.low_balance_alerts where organization_id = ${org.organizationId}::uuid`;
  return row;
}

/** A receiver on 127.0.0.1 answering with `handler`; `hits` counts requests. */
export function receiver(
  handler: (req: Request) => Response | Promise<Response>,
): { url: (path: string) => string; hits: () => number; close: () => Promise<void> } {
  let hits = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    hits += 1;
    return handler(req);
  });
  return {
    url: (path) => `http://127.0.0.1:${server.addr.port}${path}`,
    hits: () => hits,
    close: () => server.shutdown(),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

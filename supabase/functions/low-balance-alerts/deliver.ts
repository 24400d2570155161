/**
 * low-balance-alerts: delivers the low-balance outbox (SECURITY.md H3).
 *
 * Each run claims due alerts with `claim_low_balance_alerts` (for update
 * skip locked, leased: two runs never get the same alert), POSTs each to its
 * org's webhook URL and reports the outcome with `complete_low_balance_alert`:
 * a 2xx marks it delivered (it is never claimed again); anything else keeps
 * the outcome and retries later with backoff (5 s doubling, at most 1 h,
 * given up after 10 attempts).
 *
 * H6 (the deliverer is not a way into the network): before each POST the URL
 * is checked and its name resolved (address_policy.ts: https, no userinfo,
 * every resolved address public); a redirect is never followed (a 3xx is an
 * outcome); deliveries run in parallel, each bounded by `timeoutMs` (5 s) and
 * by the lease (a POST never outlives its claim, so no other run can claim and
 * post it meanwhile); the outcome stored, which admins read, is a category
 * (`delivered`, `unreachable`, `refused_address`, `http_3xx`, `http_4xx`,
 * `http_5xx`, `timeout`), never the remote's text, reported with
 * `finish_low_balance_alert` bound to the attempt. Every POST carries `Idempotency-Key: <alert id>` and
 * `X-Alert-Id`, the same on every attempt, so a receiver that saw an attempt
 * whose answer was lost drops the repeat.
 *
 * The body is JSON: `{type: "low_balance", alert_id, organization_id,
 * clerk_org_id, organization_name, organization_subscription_id, threshold,
 * balance_before, balance_after, created_at, text}`; `text` reads well in a
 * Slack incoming webhook.
 */

import postgres from "postgres";
import { type AddressPolicy, checkWebhookUrl, STRICT_POLICY } from "./address_policy.ts";

/** One claimed alert, as `claim_low_balance_alerts` returns it. */
export interface ClaimedAlert {
  alert_id: string;
  organization_id: string;
  clerk_org_id: string;
  webhook_url: string;
  attempt: number;
  payload: Record<string, unknown>;
}

/** What an attempt came to; what admins read in `low_balance_alerts.last_outcome`. */
export type AlertOutcome =
  | "delivered"
  | "unreachable"
  | "refused_address"
  | "http_3xx"
  | "http_4xx"
  | "http_5xx"
  | "timeout";

/** The outbox as the deliverer sees it. */
export interface AlertOutbox {
  claim(limit: number, leaseSeconds: number): Promise<ClaimedAlert[]>;
  finish(alertId: string, attempt: number, outcome: AlertOutcome): Promise<void>;
  close(): Promise<void>;
}

/** The outbox over a direct connection acting as service_role. */
export class PostgresAlertOutbox implements AlertOutbox {
  readonly #sql: postgres.Sql;

  constructor(url: string) {
    this.#sql = postgres(url, {
      max: 4,
      prepare: false,
      connect_timeout: 5,
      idle_timeout: 20,
      onnotice: () => {},
      connection: { application_name: "low-balance-alerts", role: "service_role" },
    });
  }

  async claim(limit: number, leaseSeconds: number): Promise<ClaimedAlert[]> {
    const rows = await this.#sql<ClaimedAlert[]>`
      select alert_id, organization_id, clerk_org_id, webhook_url, attempt, payload
      from public.claim_low_balance_alerts(${limit}, ${leaseSeconds})`;
    return [...rows];
  }

  async finish(alertId: string, attempt: number, outcome: AlertOutcome): Promise<void> {
    await this.#sql`
      select public.finish_low_balance_alert(${alertId}::uuid, ${attempt}, ${outcome})`;
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }
}

export interface DeliverOptions {
  /** At most this many alerts per run (posted in parallel); default 20. */
  limit?: number;
  /** Lease of a claimed alert in seconds; default 60. Must exceed `leaseMarginMs`. */
  leaseSeconds?: number;
  /** Per delivery (resolve + POST); default 5 s, and never past the lease. */
  timeoutMs?: number;
  /** How long before the lease ends a delivery is cut off; default 2 s. */
  leaseMarginMs?: number;
  /**
   * Where POSTs may go; default `STRICT_POLICY` (https, public addresses only).
   * Tests with a receiver on 127.0.0.1 pass their own.
   */
  addressPolicy?: AddressPolicy;
  fetch?: typeof fetch;
}

export interface DeliveryReport {
  claimed: number;
  delivered: number;
  failed: number;
}

/** The category of a response status (redirects are never followed). */
export function outcomeOfStatus(response: Response): AlertOutcome {
  const status = response.status;
  if (response.type === "opaqueredirect" || (status >= 300 && status <= 399)) return "http_3xx";
  if (status >= 200 && status <= 299) return "delivered";
  if (status >= 400 && status <= 499) return "http_4xx";
  if (status >= 500 && status <= 599) return "http_5xx";
  return "unreachable";
}

async function deliverOne(
  alert: ClaimedAlert,
  policy: AddressPolicy,
  doFetch: typeof fetch,
  timeoutMs: number,
): Promise<AlertOutcome> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const refusal = await checkWebhookUrl(alert.webhook_url, policy, signal);
    if (refusal !== null) return refusal;
    const response = await doFetch(alert.webhook_url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "idempotency-key": alert.alert_id,
        "x-alert-id": alert.alert_id,
        "x-alert-attempt": String(alert.attempt),
      },
      body: JSON.stringify(alert.payload),
      redirect: "manual",
      signal,
    });
    await response.body?.cancel().catch(() => {});
    return outcomeOfStatus(response);
  } catch {
    return signal.aborted ? "timeout" : "unreachable";
  }
}

/**
 * One run: claim, then every alert at once (one org's slow webhook never holds
 * another's back), each bounded by `timeoutMs` and by its lease, then report.
 * Never throws for a receiver's failure.
 */
export async function deliverDueAlerts(
  outbox: AlertOutbox,
  options: DeliverOptions = {},
): Promise<DeliveryReport> {
  const leaseMs = (options.leaseSeconds ?? 60) * 1000;
  const marginMs = options.leaseMarginMs ?? 2000;
  if (!(leaseMs > marginMs)) {
    throw new RangeError("leaseSeconds must exceed leaseMarginMs");
  }
  const policy = options.addressPolicy ?? STRICT_POLICY;
  const doFetch = options.fetch ?? fetch;
  // Measured before the claim: the lease the database grants ends later than this.
  const leaseEnds = Date.now() + leaseMs - marginMs;
  const alerts = await outbox.claim(options.limit ?? 20, leaseMs / 1000);
  const bound = Math.min(options.timeoutMs ?? 5000, leaseEnds - Date.now());
  const report: DeliveryReport = { claimed: alerts.length, delivered: 0, failed: 0 };
  if (bound <= 0) {
    // The claim itself took the lease: post nothing; the next run claims them again.
    return report;
  }
  await Promise.all(alerts.map(async (alert) => {
    const outcome = await deliverOne(alert, policy, doFetch, bound);
    await outbox.finish(alert.alert_id, alert.attempt, outcome);
    if (outcome === "delivered") report.delivered += 1;
    else {
      report.failed += 1;
      console.warn(
        `low-balance-alerts: alert ${alert.alert_id} attempt ${alert.attempt}: ${outcome}`,
      );
    }
  }));
  return report;
}

/**
 * low-balance-alerts: delivers the low-balance outbox (SECURITY.md H3).
 *
 * Each run claims due alerts with `claim_low_balance_alerts` (for update
 * skip locked, leased: two runs never get the same alert), POSTs each to its
 * org's webhook URL and reports the outcome with `complete_low_balance_alert`:
 * a 2xx marks it delivered (it is never claimed again); anything else keeps
 * the error and retries later with backoff (5 s doubling, at most 1 h, given
 * up after 10 attempts). Every POST carries `Idempotency-Key: <alert id>` and
 * `X-Alert-Id`, the same on every attempt, so a receiver that saw an attempt
 * whose answer was lost drops the repeat.
 *
 * The body is JSON: `{type: "low_balance", alert_id, organization_id,
 * clerk_org_id, organization_name, organization_subscription_id, threshold,
 * balance_before, balance_after, created_at, text}`; `text` reads well in a
 * Slack incoming webhook.
 */

import postgres from "postgres";

/** One claimed alert, as `claim_low_balance_alerts` returns it. */
export interface ClaimedAlert {
  alert_id: string;
  organization_id: string;
  clerk_org_id: string;
  webhook_url: string;
  attempt: number;
  payload: Record<string, unknown>;
}

/** The outbox as the deliverer sees it. */
export interface AlertOutbox {
  claim(limit: number, leaseSeconds: number): Promise<ClaimedAlert[]>;
  complete(alertId: string, error: string | null): Promise<void>;
  close(): Promise<void>;
}

/** The outbox over a direct connection acting as service_role. */
export class PostgresAlertOutbox implements AlertOutbox {
  readonly #sql: postgres.Sql;

  constructor(url: string) {
    this.#sql = postgres(url, {
      max: 1,
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

  async complete(alertId: string, error: string | null): Promise<void> {
    await this.#sql`select public.complete_low_balance_alert(${alertId}::uuid, ${error})`;
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }
}

export interface DeliverOptions {
  /** At most this many alerts per run; default 20. */
  limit?: number;
  /** Lease of a claimed alert in seconds (longer than a POST may take); default 60. */
  leaseSeconds?: number;
  /** Per POST; default 10 s. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface DeliveryReport {
  claimed: number;
  delivered: number;
  failed: number;
}

/** One run: claim, POST, report. Never throws for a receiver's failure. */
export async function deliverDueAlerts(
  outbox: AlertOutbox,
  options: DeliverOptions = {},
): Promise<DeliveryReport> {
  const doFetch = options.fetch ?? fetch;
  const alerts = await outbox.claim(options.limit ?? 20, options.leaseSeconds ?? 60);
  const report: DeliveryReport = { claimed: alerts.length, delivered: 0, failed: 0 };
  for (const alert of alerts) {
    let error: string | null = null;
    try {
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
        signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      });
      await response.body?.cancel();
      if (response.status < 200 || response.status > 299) {
        error = `HTTP ${response.status}`;
      }
    } catch (err) {
      error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    }
    await outbox.complete(alert.alert_id, error);
    if (error === null) report.delivered += 1;
    else report.failed += 1;
  }
  return report;
}

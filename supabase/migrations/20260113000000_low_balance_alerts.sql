-- Low-balance alerts (issue 20 item 3, SECURITY.md H3).
--
-- low_balance_thresholds      an org's thresholds: absolute credits, or a
--                             percentage of the pool's last grant
-- organization_subscriptions.low_balance_thresholds
--                             the same as absolute numbers, on the pool row
-- organization_alert_webhooks where an org's alerts are POSTed
-- low_balance_alerts          the outbox: one row per downward crossing
-- note_pool_debit()           called after every successful org-pool debit
-- claim_low_balance_alerts() / complete_low_balance_alert()
--                             delivery (supabase/functions/low-balance-alerts)
--
-- The rule: a debit that takes the pool from before >= t to after < t writes
-- one alert for threshold t. Debits of one pool are serialized by its row
-- lock and each passes its exact before/after, so one crossing is one alert,
-- whatever the concurrency; a grant that lifts the balance back to t or above
-- re-arms t (the next debit below it is a new crossing). No state per
-- threshold: the rule is a pure function of before, after and the thresholds.
--
-- The deduction stays fast: the thresholds it compares against are an array
-- on the pool row it already locks; it calls note_pool_debit only when the
-- pool has thresholds, and note_pool_debit inserts only on a crossing.

-- Thresholds -------------------------------------------------------------------

create table public.low_balance_thresholds (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references public.organizations (id),
    kind text not null check (kind in ('absolute', 'percent')),
    value numeric(20, 4) not null check (value > 0),
    created_at timestamptz not null default now(),
    constraint low_balance_thresholds_once unique (organization_id, kind, value),
    constraint low_balance_thresholds_percent_range check (kind <> 'percent' or value <= 100)
);

alter table public.low_balance_thresholds enable row level security;

revoke all on table public.low_balance_thresholds from public, anon, authenticated, service_role;
grant select on table public.low_balance_thresholds to authenticated, service_role;

create policy "admins read their org's low-balance thresholds"
on public.low_balance_thresholds
for select
to authenticated
using (organization_id = any(array(select private.admin_organization_ids())));

comment on table public.low_balance_thresholds is
'An org''s low-balance thresholds (H3): absolute (credits) or percent (of the amount of the '
'pool''s last grant). Written by set_low_balance_thresholds only.';

alter table public.organization_subscriptions
add column low_balance_thresholds numeric[];

comment on column public.organization_subscriptions.low_balance_thresholds is
'The org''s thresholds as absolute balances for this pool (percentages resolved against the '
'last grant), highest first; null = no alerts. Maintained by set_low_balance_thresholds and '
'on every grant; read by each debit under the pool row lock (H3).';

create function private.effective_low_balance_thresholds(
    p_organization_id uuid,
    p_last_grant numeric
)
returns numeric[]
language sql
stable
set search_path = ''
as $$
    select pg_catalog.array_agg(distinct x.v order by x.v desc)
    from (
        select
            case
                when t.kind = 'absolute' then t.value
                else pg_catalog.round(t.value * p_last_grant / 100, 4)
            end as v
        from public.low_balance_thresholds as t
        where t.organization_id = p_organization_id
    ) as x
    where x.v > 0
$$;

revoke all on function private.effective_low_balance_thresholds(uuid, numeric)
from public, anon, authenticated, service_role;

comment on function private.effective_low_balance_thresholds(uuid, numeric) is
'The org''s thresholds as absolute balances, highest first (percent of p_last_grant; none '
'without a grant), or null.';

create function private.refresh_pool_thresholds(p_subscription_id uuid)
returns numeric[]
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_org_id uuid;
    v_last_grant numeric;
    v_thresholds numeric[];
begin
    select sub.organization_id into v_org_id
    from public.organization_subscriptions as sub
    where sub.id = p_subscription_id;
    if v_org_id is null then
        return null;
    end if;
    select t.amount into v_last_grant
    from public.credit_transactions as t
    where
        t.organization_subscription_id = p_subscription_id
        and t.organization_id = v_org_id
        and t.kind = 'grant'
    order by t.created_at desc, t.id desc
    limit 1;
    v_thresholds := private.effective_low_balance_thresholds(v_org_id, coalesce(v_last_grant, 0));
    update public.organization_subscriptions as sub
    set low_balance_thresholds = v_thresholds
    where sub.id = p_subscription_id
        and sub.low_balance_thresholds is distinct from v_thresholds;
    return v_thresholds;
end
$$;

revoke all on function private.refresh_pool_thresholds(uuid)
from public, anon, authenticated, service_role;

comment on function private.refresh_pool_thresholds(uuid) is
'Recomputes a pool''s low_balance_thresholds from the org''s thresholds and its last grant '
'(a ledger read: for settings changes, not for debits).';

-- A grant re-resolves percentages against its own amount. A row trigger with
-- a WHEN clause: a deduction's insert evaluates the condition and queues
-- nothing.
create function private.rearm_thresholds_on_grant()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if exists (
        select from public.low_balance_thresholds as t
        where t.organization_id = new.organization_id and t.kind = 'percent'
    ) then
        update public.organization_subscriptions as sub
        set low_balance_thresholds
            = private.effective_low_balance_thresholds(new.organization_id, new.amount)
        where sub.id = new.organization_subscription_id;
    end if;
    return null;
end
$$;

revoke all on function private.rearm_thresholds_on_grant()
from public, anon, authenticated, service_role;

comment on function private.rearm_thresholds_on_grant() is
'Trigger: after an org-pool grant, percentage thresholds are resolved against its amount.';

create trigger credit_transactions_grant_thresholds
after insert on public.credit_transactions
for each row
when (new.kind = 'grant' and new.pool = 'organization')
execute function private.rearm_thresholds_on_grant();

-- Webhook URL ------------------------------------------------------------------

create table public.organization_alert_webhooks (
    organization_id uuid primary key references public.organizations (id),
    url text not null check (url ~ '^https?://[^[:space:]]+$' and pg_catalog.length(url) <= 2000),
    updated_at timestamptz not null default now()
);

alter table public.organization_alert_webhooks enable row level security;

revoke all on table public.organization_alert_webhooks
from public, anon, authenticated, service_role;
grant select on table public.organization_alert_webhooks to authenticated, service_role;

create policy "admins read their org's alert webhook"
on public.organization_alert_webhooks
for select
to authenticated
using (organization_id = any(array(select private.admin_organization_ids())));

comment on table public.organization_alert_webhooks is
'Where an org''s low-balance alerts are POSTed (a Slack incoming webhook, an email relay...). '
'Set by owners/admins with set_low_balance_webhook (H3).';

-- The outbox -------------------------------------------------------------------

create table public.low_balance_alerts (
    id uuid primary key default private.uuid_v7(),
    organization_id uuid not null references public.organizations (id),
    organization_subscription_id uuid not null references public.organization_subscriptions (id),
    threshold numeric(20, 4) not null,
    balance_before numeric(20, 4) not null,
    balance_after numeric(20, 4) not null,
    created_at timestamptz not null default now(),
    attempts int not null default 0,
    next_attempt_at timestamptz not null default now(),
    claimed_until timestamptz,
    last_error text,
    delivered_at timestamptz,
    failed_at timestamptz
);

create index low_balance_alerts_due_idx
on public.low_balance_alerts (next_attempt_at)
where delivered_at is null and failed_at is null;
create index low_balance_alerts_organization_id_idx
on public.low_balance_alerts (organization_id, created_at);
create index low_balance_alerts_subscription_idx
on public.low_balance_alerts (organization_subscription_id);

alter table public.low_balance_alerts enable row level security;

revoke all on table public.low_balance_alerts from public, anon, authenticated, service_role;
grant select on table public.low_balance_alerts to authenticated, service_role;

create policy "admins read their org's low-balance alerts"
on public.low_balance_alerts
for select
to authenticated
using (organization_id = any(array(select private.admin_organization_ids())));

comment on table public.low_balance_alerts is
'Outbox of low-balance alerts: one row per downward crossing of a threshold (H3), written by '
'note_pool_debit; delivered by the low-balance-alerts edge function through '
'claim_low_balance_alerts / complete_low_balance_alert. delivered_at set: never sent again.';

-- note_pool_debit ----------------------------------------------------------------

create function private.note_pool_debit(
    p_subscription_id uuid,
    p_balance_before numeric,
    p_balance_after numeric
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    if p_balance_after >= p_balance_before then
        return;
    end if;
    -- One primary-key read of the pool row (already locked by the caller's
    -- debit); an insert only for a threshold in (after, before].
    insert into public.low_balance_alerts (
        organization_id, organization_subscription_id, threshold, balance_before, balance_after
    )
    select sub.organization_id, sub.id, t.v, p_balance_before, p_balance_after
    from public.organization_subscriptions as sub
    cross join lateral pg_catalog.unnest(sub.low_balance_thresholds) as t (v)
    where sub.id = p_subscription_id and t.v <= p_balance_before and t.v > p_balance_after;
end
$$;

revoke all on function private.note_pool_debit(uuid, numeric, numeric)
from public, anon, authenticated, service_role;

comment on function private.note_pool_debit(uuid, numeric, numeric) is
'After a successful debit of an org pool (under its row lock): one low_balance_alerts row per '
'threshold t with before >= t > after (H3). Call with the exact balance before and after.';

-- Settings RPCs -------------------------------------------------------------------

create type public.low_balance_alert_settings as (
    ok boolean,
    reason text,
    organization_id uuid,
    absolute_thresholds numeric [],
    percent_thresholds numeric [],
    pool_thresholds numeric [],
    webhook_url text
);

comment on type public.low_balance_alert_settings is
'Result of set_low_balance_thresholds and set_low_balance_webhook. reason (ok = false): '
'not_an_admin, unknown_organization (service role). pool_thresholds: the current pool''s '
'thresholds as balances.';

create function private.low_balance_alert_settings(p_organization_id uuid)
returns public.low_balance_alert_settings
language sql
stable
set search_path = ''
as $$
    select row(
        true,
        null,
        p_organization_id,
        (
            select pg_catalog.array_agg(t.value order by t.value desc)
            from public.low_balance_thresholds as t
            where t.organization_id = p_organization_id and t.kind = 'absolute'
        ),
        (
            select pg_catalog.array_agg(t.value order by t.value desc)
            from public.low_balance_thresholds as t
            where t.organization_id = p_organization_id and t.kind = 'percent'
        ),
        (
            select sub.low_balance_thresholds
            from public.organization_subscriptions as sub
            where sub.organization_id = p_organization_id and sub.is_current
        ),
        (
            select w.url
            from public.organization_alert_webhooks as w
            where w.organization_id = p_organization_id
        )
    )::public.low_balance_alert_settings
$$;

revoke all on function private.low_balance_alert_settings(uuid)
from public, anon, authenticated, service_role;

-- p_actor: the Clerk user acting (an active owner/admin of the org, checked
-- here), or null for the service role acting for itself.
create function private.may_administer_org(p_actor text, p_organization_id uuid)
returns text
language plpgsql
stable
set search_path = ''
as $$
begin
    if p_actor is null then
        if not exists (select from public.organizations as o where o.id = p_organization_id) then
            return 'unknown_organization';
        end if;
        return null;
    elsif not private.is_org_admin(p_actor, p_organization_id) then
        return 'not_an_admin';
    end if;
    return null;
end
$$;

revoke all on function private.may_administer_org(text, uuid)
from public, anon, authenticated, service_role;

comment on function private.may_administer_org(text, uuid) is
'null when p_actor may change the org''s settings (null actor = the service role itself; else an '
'active owner/admin of the org), else the refusal reason.';

create function private.store_low_balance_thresholds(
    p_actor text,
    p_organization_id uuid,
    p_absolute numeric[],
    p_percent numeric[]
)
returns public.low_balance_alert_settings
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_reason text;
    v_sub_id uuid;
begin
    if p_organization_id is null then
        raise exception 'p_organization_id must not be null' using errcode = '22023';
    elsif pg_catalog.cardinality(p_absolute) > 20 or pg_catalog.cardinality(p_percent) > 20 then
        raise exception 'p_absolute and p_percent must hold at most 20 thresholds each'
            using errcode = '22023';
    elsif exists (
        select from pg_catalog.unnest(p_absolute) as a (v)
        where a.v is null or a.v = 'NaN'::numeric or a.v <= 0 or a.v > 1000000000000
            or a.v <> pg_catalog.round(a.v, 4)
    ) then
        raise exception 'p_absolute must hold numbers > 0 and <= 1e12 with at most 4 decimals'
            using errcode = '22023';
    elsif exists (
        select from pg_catalog.unnest(p_percent) as p (v)
        where p.v is null or p.v = 'NaN'::numeric or p.v <= 0 or p.v > 100
            or p.v <> pg_catalog.round(p.v, 4)
    ) then
        raise exception 'p_percent must hold numbers > 0 and <= 100 with at most 4 decimals'
            using errcode = '22023';
    end if;

    v_reason := private.may_administer_org(p_actor, p_organization_id);
    if v_reason is not null then
        return row(
            false, v_reason, p_organization_id, null, null, null, null
        )::public.low_balance_alert_settings;
    end if;

    delete from public.low_balance_thresholds as t
    where t.organization_id = p_organization_id;
    insert into public.low_balance_thresholds (organization_id, kind, value)
    select distinct p_organization_id, 'absolute', a.v
    from pg_catalog.unnest(p_absolute) as a (v)
    union
    select distinct p_organization_id, 'percent', p.v
    from pg_catalog.unnest(p_percent) as p (v);

    select sub.id into v_sub_id
    from public.organization_subscriptions as sub
    where sub.organization_id = p_organization_id and sub.is_current;
    if v_sub_id is not null then
        perform private.refresh_pool_thresholds(v_sub_id);
    end if;
    return private.low_balance_alert_settings(p_organization_id);
end
$$;

revoke all on function private.store_low_balance_thresholds(text, uuid, numeric[], numeric[])
from public, anon, authenticated, service_role;

create function private.store_low_balance_webhook(
    p_actor text,
    p_organization_id uuid,
    p_url text
)
returns public.low_balance_alert_settings
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_reason text;
begin
    if p_organization_id is null then
        raise exception 'p_organization_id must not be null' using errcode = '22023';
    elsif p_url is not null
        and (p_url !~ '^https?://[^[:space:]]+$' or pg_catalog.length(p_url) > 2000) then
        raise exception 'p_url must be an http(s) URL of at most 2000 characters'
            using errcode = '22023';
    end if;

    v_reason := private.may_administer_org(p_actor, p_organization_id);
    if v_reason is not null then
        return row(
            false, v_reason, p_organization_id, null, null, null, null
        )::public.low_balance_alert_settings;
    end if;

    if p_url is null then
        delete from public.organization_alert_webhooks as w
        where w.organization_id = p_organization_id;
    else
        insert into public.organization_alert_webhooks (organization_id, url)
        values (p_organization_id, p_url)
        on conflict (organization_id) do update
            set url = excluded.url, updated_at = pg_catalog.now();
    end if;
    return private.low_balance_alert_settings(p_organization_id);
end
$$;

revoke all on function private.store_low_balance_webhook(text, uuid, text)
from public, anon, authenticated, service_role;

-- Signed-in callers: security definer bodies in schema private (not exposed),
-- identity only from auth.jwt() ->> 'sub'.
create function private.set_low_balance_thresholds_checked(
    p_organization_id uuid,
    p_absolute numeric[],
    p_percent numeric[]
)
returns public.low_balance_alert_settings
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    return private.store_low_balance_thresholds(
        coalesce((select auth.jwt()) ->> 'sub', ''), p_organization_id, p_absolute, p_percent
    );
end
$$;

revoke all on function private.set_low_balance_thresholds_checked(uuid, numeric[], numeric[])
from public, anon, authenticated, service_role;
grant execute on function private.set_low_balance_thresholds_checked(uuid, numeric[], numeric[])
to authenticated;

comment on function private.set_low_balance_thresholds_checked(uuid, numeric[], numeric[]) is
'Body of public.set_low_balance_thresholds for signed-in callers (security definer: it writes '
'rows no API role may write; the caller is checked as an owner/admin of the org).';

create function private.set_low_balance_webhook_checked(p_organization_id uuid, p_url text)
returns public.low_balance_alert_settings
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    return private.store_low_balance_webhook(
        coalesce((select auth.jwt()) ->> 'sub', ''), p_organization_id, p_url
    );
end
$$;

revoke all on function private.set_low_balance_webhook_checked(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function private.set_low_balance_webhook_checked(uuid, text) to authenticated;

comment on function private.set_low_balance_webhook_checked(uuid, text) is
'Body of public.set_low_balance_webhook for signed-in callers (security definer, checked as '
'set_low_balance_thresholds_checked).';

-- The service role (the issuer acting for a verified user, or for itself
-- with p_clerk_user_id null).
create function public.set_low_balance_thresholds_as(
    p_clerk_user_id text,
    p_organization_id uuid,
    p_absolute numeric[],
    p_percent numeric[]
)
returns public.low_balance_alert_settings
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    if p_clerk_user_id = '' then
        raise exception 'p_clerk_user_id must not be empty (null: the service itself)'
            using errcode = '22023';
    end if;
    return private.store_low_balance_thresholds(
        p_clerk_user_id, p_organization_id, p_absolute, p_percent
    );
end
$$;

revoke all on function public.set_low_balance_thresholds_as(text, uuid, numeric[], numeric[])
from public, anon, authenticated, service_role;
grant execute on function public.set_low_balance_thresholds_as(text, uuid, numeric[], numeric[])
to service_role;

comment on function public.set_low_balance_thresholds_as(text, uuid, numeric[], numeric[]) is
'set_low_balance_thresholds on behalf of p_clerk_user_id (checked: an active owner/admin of the '
'org), or of the service itself (null). Service role only (H3).';

create function public.set_low_balance_webhook_as(
    p_clerk_user_id text,
    p_organization_id uuid,
    p_url text
)
returns public.low_balance_alert_settings
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    if p_clerk_user_id = '' then
        raise exception 'p_clerk_user_id must not be empty (null: the service itself)'
            using errcode = '22023';
    end if;
    return private.store_low_balance_webhook(p_clerk_user_id, p_organization_id, p_url);
end
$$;

revoke all on function public.set_low_balance_webhook_as(text, uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.set_low_balance_webhook_as(text, uuid, text) to service_role;

comment on function public.set_low_balance_webhook_as(text, uuid, text) is
'set_low_balance_webhook on behalf of p_clerk_user_id (checked) or the service itself (null). '
'Service role only (H3).';

-- The API: security invoker (Supabase's linter, splinter 0029: no security
-- definer function in an exposed schema is executable by authenticated).
create function public.set_low_balance_thresholds(
    p_organization_id uuid,
    p_absolute numeric[],
    p_percent numeric[]
)
returns public.low_balance_alert_settings
language plpgsql
volatile
security invoker
set search_path = ''
as $$
begin
    if pg_catalog.current_setting('role', true) = 'service_role' then
        return public.set_low_balance_thresholds_as(null, p_organization_id, p_absolute, p_percent);
    end if;
    return private.set_low_balance_thresholds_checked(p_organization_id, p_absolute, p_percent);
end
$$;

revoke all on function public.set_low_balance_thresholds(uuid, numeric[], numeric[])
from public, anon, authenticated, service_role;
grant execute on function public.set_low_balance_thresholds(uuid, numeric[], numeric[])
to authenticated, service_role;

comment on function public.set_low_balance_thresholds(uuid, numeric[], numeric[]) is
'Replace the org''s low-balance thresholds: p_absolute (credits) and p_percent (of the last '
'grant, 0 < p <= 100); empty or null arrays = none. Only active owners/admins of the org '
'(auth.jwt() ->> ''sub'') or the service role; refusals not_an_admin / unknown_organization; '
'bad input 22023. Setting thresholds never alerts by itself: only a debit crossing one does (H3).';

create function public.set_low_balance_webhook(p_organization_id uuid, p_url text)
returns public.low_balance_alert_settings
language plpgsql
volatile
security invoker
set search_path = ''
as $$
begin
    if pg_catalog.current_setting('role', true) = 'service_role' then
        return public.set_low_balance_webhook_as(null, p_organization_id, p_url);
    end if;
    return private.set_low_balance_webhook_checked(p_organization_id, p_url);
end
$$;

revoke all on function public.set_low_balance_webhook(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.set_low_balance_webhook(uuid, text) to authenticated, service_role;

comment on function public.set_low_balance_webhook(uuid, text) is
'Set (null: remove) the URL the org''s low-balance alerts are POSTed to. Same callers and '
'refusals as set_low_balance_thresholds; p_url not http(s): 22023 (H3).';

-- Delivery -----------------------------------------------------------------------

create function public.claim_low_balance_alerts(
    p_limit int default 10,
    p_lease_seconds int default 60
)
returns table (
    alert_id uuid,
    organization_id uuid,
    clerk_org_id text,
    webhook_url text,
    attempt int,
    payload jsonb
)
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    if p_limit is null or p_limit < 1 or p_limit > 100 then
        raise exception 'p_limit must be 1 to 100' using errcode = '22023';
    elsif p_lease_seconds is null or p_lease_seconds < 1 or p_lease_seconds > 3600 then
        raise exception 'p_lease_seconds must be 1 to 3600' using errcode = '22023';
    end if;

    return query
    with due as (
        select a.id
        from public.low_balance_alerts as a
        where
            a.delivered_at is null
            and a.failed_at is null
            and a.next_attempt_at <= pg_catalog.now()
            and (a.claimed_until is null or a.claimed_until < pg_catalog.now())
            and exists (
                select from public.organization_alert_webhooks as w
                where w.organization_id = a.organization_id
            )
        order by a.next_attempt_at
        limit p_limit
        for update of a skip locked
    ),

    claimed as (
        update public.low_balance_alerts as a
        set attempts = a.attempts + 1,
            claimed_until = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_seconds)
        from due
        where a.id = due.id
        returning a.*
    )

    select
        c.id,
        c.organization_id,
        o.clerk_org_id,
        w.url,
        c.attempts,
        pg_catalog.jsonb_build_object(
            'type', 'low_balance',
            'alert_id', c.id,
            'organization_id', c.organization_id,
            'clerk_org_id', o.clerk_org_id,
            'organization_name', o.name,
            'organization_subscription_id', c.organization_subscription_id,
            'threshold', c.threshold,
            'balance_before', c.balance_before,
            'balance_after', c.balance_after,
            'created_at', c.created_at,
            'text', pg_catalog.format(
                '%s: the credit pool fell below %s (balance %s)',
                o.name, c.threshold, c.balance_after
            )
        )
    from claimed as c
    inner join public.organizations as o on c.organization_id = o.id
    inner join public.organization_alert_webhooks as w on c.organization_id = w.organization_id
    order by c.next_attempt_at;
end
$$;

revoke all on function public.claim_low_balance_alerts(int, int)
from public, anon, authenticated, service_role;
grant execute on function public.claim_low_balance_alerts(int, int) to service_role;

comment on function public.claim_low_balance_alerts(int, int) is
'Claims up to p_limit due, undelivered alerts of orgs with a webhook (for update skip locked: '
'concurrent deliverers never get the same alert), leases them for p_lease_seconds and counts '
'the attempt. Returns the URL and the JSON body to POST. Service role only (H3).';

create type public.low_balance_alert_delivery as (
    alert_id uuid,
    delivered boolean,
    failed boolean,
    attempts int,
    next_attempt_at timestamptz
);

comment on type public.low_balance_alert_delivery is
'Result of complete_low_balance_alert: delivered (never sent again), failed (gave up after '
'the last attempt), else retried at next_attempt_at.';

create function public.complete_low_balance_alert(p_alert_id uuid, p_error text default null)
returns public.low_balance_alert_delivery
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_result public.low_balance_alert_delivery;
begin
    if p_alert_id is null then
        raise exception 'p_alert_id must not be null' using errcode = '22023';
    end if;

    if p_error is null then
        update public.low_balance_alerts as a
        set delivered_at = coalesce(a.delivered_at, pg_catalog.now()),
            claimed_until = null,
            last_error = null
        where a.id = p_alert_id
        returning a.id, true, false, a.attempts, a.next_attempt_at into v_result;
    else
        -- Backoff: 5 s, 10 s, 20 s ... at most an hour; after 10 attempts
        -- the alert is given up (failed_at) and stays in the table to read.
        update public.low_balance_alerts as a
        set claimed_until = null,
            last_error = pg_catalog.left(p_error, 2000),
            next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(
                secs => least(3600, 5 * pg_catalog.power(2, greatest(a.attempts - 1, 0)))
            ),
            failed_at = case when a.attempts >= 10 then pg_catalog.now() end
        where a.id = p_alert_id and a.delivered_at is null
        returning
            a.id, false, a.failed_at is not null, a.attempts, a.next_attempt_at
        into v_result;
        if v_result.alert_id is null then
            -- already delivered (a late failure report of a duplicate): keep it
            select a.id, true, false, a.attempts, a.next_attempt_at into v_result
            from public.low_balance_alerts as a
            where a.id = p_alert_id;
        end if;
    end if;

    if v_result.alert_id is null then
        raise exception 'no low-balance alert %', p_alert_id using errcode = 'P0002';
    end if;
    return v_result;
end
$$;

revoke all on function public.complete_low_balance_alert(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.complete_low_balance_alert(uuid, text) to service_role;

comment on function public.complete_low_balance_alert(uuid, text) is
'Report a delivery attempt: p_error null = delivered (final: never claimed again); else the '
'error is kept in last_error and the alert is retried with backoff (5 s doubling, at most 1 h), '
'given up after 10 attempts (failed_at). Service role only (H3).';

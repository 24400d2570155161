-- Analytics views over the ledger (docs/analytics.md is the cookbook).
--
-- security_invoker: a view reads with the privileges and RLS of whoever
-- queries it, never with its owner's. Select is granted to service_role only:
-- analysts use the service role (or a read replica), not end-user sessions.
-- Days are UTC days. Filter on organization_id / clerk_org_id, seat_id or
-- organization_subscription_id to be served by the ledger's indexes.

create view public.credit_usage_by_org_day
with (security_invoker = true)
as
select
    t.organization_id,
    o.clerk_org_id,
    o.name as organization_name,
    o.stripe_customer_id,
    (t.created_at at time zone 'UTC')::date as usage_date,
    count(*) filter (where t.kind = 'deduction') as deductions,
    coalesce(sum(-t.amount) filter (where t.kind = 'deduction'), 0) as credits_used,
    coalesce(sum(t.amount) filter (where t.kind = 'refund'), 0) as credits_refunded,
    coalesce(sum(-t.amount) filter (where t.kind in ('deduction', 'refund')), 0) as net_credits_used,
    coalesce(sum(t.amount) filter (where t.kind = 'grant'), 0) as credits_granted,
    count(distinct t.seat_id) filter (where t.kind = 'deduction') as active_seats
from public.credit_transactions as t
inner join public.organizations as o on t.organization_id = o.id
where t.pool = 'organization'
group by t.organization_id, o.id, (t.created_at at time zone 'UTC')::date;

revoke all on table public.credit_usage_by_org_day from public, anon, authenticated, service_role;
grant select on table public.credit_usage_by_org_day to service_role;

comment on view public.credit_usage_by_org_day is
'Org-pool usage per organization per UTC day: deductions, credits used, refunded, net used, '
'granted, and the number of seats that spent. Service role only.';

create view public.credit_usage_by_seat
with (security_invoker = true)
as
select
    t.seat_id,
    t.organization_id,
    o.clerk_org_id,
    o.name as organization_name,
    s.user_id,
    u.clerk_user_id,
    s.role as seat_role,
    s.status as seat_status,
    count(*) filter (where t.kind = 'deduction') as deductions,
    coalesce(sum(-t.amount) filter (where t.kind = 'deduction'), 0) as credits_used,
    coalesce(sum(t.amount) filter (where t.kind = 'refund'), 0) as credits_refunded,
    coalesce(sum(-t.amount), 0) as net_credits_used,
    min(t.created_at) as first_used_at,
    max(t.created_at) as last_used_at
from public.credit_transactions as t
inner join public.organization_seats as s on t.seat_id = s.id
inner join public.organizations as o on t.organization_id = o.id
inner join public.users as u on s.user_id = u.id
where t.seat_id is not null
group by t.seat_id, t.organization_id, s.id, o.id, u.id;

revoke all on table public.credit_usage_by_seat from public, anon, authenticated, service_role;
grant select on table public.credit_usage_by_seat to service_role;

comment on view public.credit_usage_by_seat is
'Org-pool usage per seat (all time): who spent how much of which org''s pool, with the seat''s '
'current role and status. Service role only.';

create view public.credit_usage_by_subscription_period
with (security_invoker = true)
as
select
    t.organization_subscription_id,
    t.organization_id,
    o.clerk_org_id,
    o.name as organization_name,
    o.stripe_customer_id,
    sub.stripe_subscription_id,
    t.subscription_period_start,
    t.subscription_period_end,
    count(*) filter (where t.kind = 'deduction') as deductions,
    coalesce(sum(t.amount) filter (where t.kind = 'grant'), 0) as credits_granted,
    coalesce(sum(-t.amount) filter (where t.kind = 'deduction'), 0) as credits_used,
    coalesce(sum(t.amount) filter (where t.kind = 'refund'), 0) as credits_refunded,
    coalesce(sum(-t.amount) filter (where t.kind in ('deduction', 'refund')), 0)
        as net_credits_used
from public.credit_transactions as t
inner join public.organization_subscriptions as sub
    on t.organization_subscription_id = sub.id
inner join public.organizations as o on t.organization_id = o.id
where t.pool = 'organization'
group by
    t.organization_subscription_id, t.organization_id, sub.id, o.id,
    t.subscription_period_start, t.subscription_period_end;

revoke all on table public.credit_usage_by_subscription_period
from public, anon, authenticated, service_role;
grant select on table public.credit_usage_by_subscription_period to service_role;

comment on view public.credit_usage_by_subscription_period is
'Org-pool grants and usage per subscription per billing period (the period recorded on each '
'ledger row; refunds count in the period of the deduction they reverse). Service role only.';

create view public.credit_balances
with (security_invoker = true)
as
select
    'personal' as pool,
    u.id as owner_id,
    u.id as user_id,
    u.clerk_user_id,
    null::uuid as organization_id,
    null::text as clerk_org_id,
    null::text as organization_name,
    null::text as stripe_customer_id,
    null::uuid as organization_subscription_id,
    null::text as subscription_status,
    null::boolean as is_current,
    u.credits_balance as balance
from public.users as u
union all
select
    'organization' as pool,
    sub.id as owner_id,
    null::uuid as user_id,
    null::text as clerk_user_id,
    o.id as organization_id,
    o.clerk_org_id,
    o.name as organization_name,
    o.stripe_customer_id,
    sub.id as organization_subscription_id,
    sub.status as subscription_status,
    sub.is_current,
    sub.credits_balance as balance
from public.organization_subscriptions as sub
inner join public.organizations as o on sub.organization_id = o.id;

revoke all on table public.credit_balances from public, anon, authenticated, service_role;
grant select on table public.credit_balances to service_role;

comment on view public.credit_balances is
'Current balance of every pool: personal (owner_id = users.id) and organization '
'(owner_id = organization_subscriptions.id; is_current marks the pool the org spends). '
'owner_id matches credit_consistency_check(). Service role only.';

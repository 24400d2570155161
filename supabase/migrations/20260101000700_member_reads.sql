-- Reads for signed-in users (role authenticated), e.g. the dashboard:
-- their personal balance and, per organization where they hold an active
-- seat, the pool balance and their own usage this period.

create function public.get_my_personal_balance()
returns numeric
language sql
stable
security invoker
set search_path = ''
as $$
    select u.credits_balance
    from public.users as u
    where u.clerk_user_id = (select auth.jwt()) ->> 'sub'
$$;

revoke all on function public.get_my_personal_balance() from public, anon, authenticated, service_role;
grant execute on function public.get_my_personal_balance() to authenticated;

comment on function public.get_my_personal_balance() is
'The signed-in caller''s personal credits, or null when they have no users row. Security '
'invoker: the users policy already lets a user read their own row.';

-- The pools of the caller's orgs. A member may not read the subscription row
-- or other members' transactions through RLS, so the read runs as its owner
-- in private.my_org_pools (schema private is not exposed by PostgREST);
-- public.get_my_org_pools, the API, is security invoker (Supabase's linter,
-- splinter 0029: no security definer function in an exposed schema is
-- executable by authenticated). Identity comes only from auth.jwt().
create function private.my_org_pools()
returns table (
    clerk_org_id text,
    organization_id uuid,
    organization_name text,
    seat_id uuid,
    seat_role text,
    organization_subscription_id uuid,
    subscription_status text,
    can_spend boolean,
    pool_balance numeric,
    current_period_start timestamptz,
    current_period_end timestamptz,
    my_usage_this_period numeric
)
language sql
stable
security definer
set search_path = ''
as $$
    select
        o.clerk_org_id,
        o.id,
        o.name,
        s.id,
        s.role,
        sub.id,
        sub.status,
        coalesce(private.subscription_allows_spending(sub.status), false),
        sub.credits_balance,
        sub.current_period_start,
        sub.current_period_end,
        coalesce((
            select -sum(t.amount)
            from public.credit_transactions as t
            where
                t.seat_id = s.id
                and t.organization_subscription_id = sub.id
                and t.kind in ('deduction', 'refund')
                and t.subscription_period_start is not distinct from sub.current_period_start
        ), 0)
    from public.users as u
    inner join public.organization_seats as s
        on u.id = s.user_id
    inner join public.organizations as o
        on s.organization_id = o.id
    left join public.organization_subscriptions as sub
        on o.id = sub.organization_id and sub.is_current
    where
        u.clerk_user_id = (select auth.jwt()) ->> 'sub'
        and private.seat_allows_spending(s.status)
    order by o.name, o.clerk_org_id
$$;

revoke all on function private.my_org_pools() from public, anon, authenticated, service_role;
grant execute on function private.my_org_pools() to authenticated;
-- The invoker wrapper below names private.my_org_pools as the caller, which
-- needs USAGE on the schema. It opens nothing else: private holds no tables,
-- and authenticated may execute only the helpers granted to it by name
-- (sql/tests/90_security_lints.sql lists them). PostgREST still does not
-- serve the schema; anon gets nothing.
grant usage on schema private to authenticated;

comment on function private.my_org_pools() is
'Body of public.get_my_org_pools. Security definer, justified: a member may not read the '
'subscription row or other members'' transactions through RLS, and this returns exactly the '
'pool balance of the caller''s own orgs (active seats) and the caller''s own usage; identity '
'comes only from auth.jwt(), never from an argument. In schema private: not exposed over the API.';

create function public.get_my_org_pools()
returns table (
    clerk_org_id text,
    organization_id uuid,
    organization_name text,
    seat_id uuid,
    seat_role text,
    organization_subscription_id uuid,
    subscription_status text,
    can_spend boolean,
    pool_balance numeric,
    current_period_start timestamptz,
    current_period_end timestamptz,
    my_usage_this_period numeric
)
language sql
stable
security invoker
set search_path = ''
as $$
    select
        p.clerk_org_id,
        p.organization_id,
        p.organization_name,
        p.seat_id,
        p.seat_role,
        p.organization_subscription_id,
        p.subscription_status,
        p.can_spend,
        p.pool_balance,
        p.current_period_start,
        p.current_period_end,
        p.my_usage_this_period
    from private.my_org_pools() as p
$$;

revoke all on function public.get_my_org_pools() from public, anon, authenticated, service_role;
grant execute on function public.get_my_org_pools() to authenticated;

comment on function public.get_my_org_pools() is
'For each organization where the signed-in caller holds an active seat: the org, the seat, '
'the current subscription (status, can_spend, pool_balance, period) and the caller''s own net '
'usage (deductions minus refunds) in the current period. Security invoker; the read itself is '
'private.my_org_pools (security definer, not exposed), so Supabase''s linter has no warning.';

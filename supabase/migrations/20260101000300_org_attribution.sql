-- Seat-gated org attribution: the one round trip the issuer makes before it
-- signs an org-scoped token.

create function public.resolve_org_attribution(p_clerk_user_id text, p_clerk_org_id text)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
    -- plpgsql, not sql: a sql function with a SET clause is never inlined and
    -- its query is planned again on every call (Postgres 15). This one runs
    -- for every org-scoped token; `python -m bench --scenario experiments`
    -- measured 500-600 µs of server time per call as sql, under 80 µs as
    -- plpgsql, whose plan is cached (docs/performance.md).
    return (
        select
            pg_catalog.jsonb_build_object(
                'pool', 'organization',
                'clerk_org_id', o.clerk_org_id,
                'organization_id', o.id,
                'organization_name', o.name,
                'stripe_customer_id', o.stripe_customer_id,
                'organization_subscription_id', sub.id,
                'seat_id', s.id,
                'seat_role', s.role
            )
        from public.organizations as o
        inner join public.organization_seats as s
            on o.id = s.organization_id
        inner join public.users as u
            on s.user_id = u.id
        left join public.organization_subscriptions as sub
            on o.id = sub.organization_id and sub.is_current
        where
            o.clerk_org_id = p_clerk_org_id
            and u.clerk_user_id = p_clerk_user_id
            and s.status = 'active'
    );
end
$$;

revoke all on function public.resolve_org_attribution(text, text)
from public, anon, authenticated, service_role;
grant execute on function public.resolve_org_attribution(text, text) to service_role;

comment on function public.resolve_org_attribution(text, text) is
'Seat-gated org attribution for token issuance. null unless the organization exists and the '
'user holds an active seat in it; otherwise an object with exactly the keys pool '
'(''organization''), clerk_org_id, organization_id, organization_name, stripe_customer_id, '
'organization_subscription_id (null without a current subscription), seat_id, seat_role. '
'org_role comes from Clerk, not from here. Service role only; security invoker.';

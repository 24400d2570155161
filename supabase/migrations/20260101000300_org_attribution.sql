-- Seat-gated org attribution: the one round trip the issuer makes before it
-- signs an org-scoped token.

-- The one place that lists the org attribution keys: a token's org claims
-- (resolve_org_attribution) and every org-pool ledger row's metadata
-- (deduct_credits_pooled, deduct_credits_pooled_batch, grant_credits; a
-- refund copies its deduction's) are built here.
create function private.org_attribution_metadata(
    p_clerk_org_id text,
    p_organization_id uuid,
    p_organization_name text,
    p_stripe_customer_id text,
    p_organization_subscription_id uuid,
    p_seat_id uuid,
    p_seat_role text
)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
begin
    -- plpgsql, not sql: a sql function with a SET clause is planned again on
    -- every call (Postgres 15); this one runs for every org deduction.
    return pg_catalog.jsonb_build_object(
        'pool', 'organization',
        'clerk_org_id', p_clerk_org_id,
        'organization_id', p_organization_id,
        'organization_name', p_organization_name,
        'stripe_customer_id', p_stripe_customer_id,
        'organization_subscription_id', p_organization_subscription_id,
        'seat_id', p_seat_id,
        'seat_role', p_seat_role
    );
end
$$;

revoke all on function private.org_attribution_metadata(text, uuid, text, text, uuid, uuid, text)
from public, anon, authenticated, service_role;

comment on function private.org_attribution_metadata(text, uuid, text, text, uuid, uuid, text) is
'The org attribution object: exactly the keys pool (''organization''), clerk_org_id, '
'organization_id, organization_name, stripe_customer_id, organization_subscription_id, '
'seat_id, seat_role. Ledger rows add clerk_user_id (deductions) and context with ||.';

-- What resolve_org_attribution answers: the same keys as the metadata object
-- above, as columns (the one result convention: a named composite type).
-- "No attribution" is a null row, never a row of nulls with a reason: the
-- typed client reads it as None (docs/database.md, "The typed client").
create type public.org_attribution as (
    pool text,
    clerk_org_id text,
    organization_id uuid,
    organization_name text,
    stripe_customer_id text,
    organization_subscription_id uuid,
    seat_id uuid,
    seat_role text
);

comment on type public.org_attribution is
'A token''s org attribution (resolve_org_attribution): the keys of '
'private.org_attribution_metadata as columns. null (the whole row) when there is none.';
comment on column public.org_attribution.pool is '@not-null always ''organization''.';
comment on column public.org_attribution.clerk_org_id is '@not-null';
comment on column public.org_attribution.organization_id is '@not-null';
comment on column public.org_attribution.organization_name is '@not-null';
comment on column public.org_attribution.seat_id is '@not-null';
comment on column public.org_attribution.seat_role is '@not-null';
comment on column public.org_attribution.organization_subscription_id is
'null without a current subscription.';

create function public.resolve_org_attribution(p_clerk_user_id text, p_clerk_org_id text)
returns public.org_attribution
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    -- plpgsql, not sql: a sql function with a SET clause is never inlined and
    -- its query is planned again on every call (Postgres 15). This one runs
    -- for every org-scoped token; `python -m bench --scenario experiments`
    -- measured 500-600 µs of server time per call as sql, under 80 µs as
    -- plpgsql, whose plan is cached (docs/performance.md).
    --
    -- The row is read out of private.org_attribution_metadata, the one builder
    -- of the attribution keys, so a token's claims and a ledger row's metadata
    -- cannot drift apart (sql/tests/11_org_attribution.sql checks that the
    -- type has exactly the builder's keys).
    return (
        select
            pg_catalog.jsonb_populate_record(
                null::public.org_attribution,
                private.org_attribution_metadata(
                    o.clerk_org_id, o.id, o.name, o.stripe_customer_id, sub.id, s.id, s.role
                )
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
            and private.seat_allows_spending(s.status)
    );
end
$$;

revoke all on function public.resolve_org_attribution(text, text)
from public, anon, authenticated, service_role;
grant execute on function public.resolve_org_attribution(text, text) to service_role;

comment on function public.resolve_org_attribution(text, text) is
'@nullable Seat-gated org attribution for token issuance. null unless the organization exists '
'and the user holds an active seat in it; otherwise a public.org_attribution row: pool '
'(''organization''), clerk_org_id, organization_id, organization_name, stripe_customer_id, '
'organization_subscription_id (null without a current subscription), seat_id, seat_role. '
'org_role comes from Clerk, not from here. Service role only; security definer, because it '
'calls the private helpers (seat_allows_spending, org_attribution_metadata), which the service '
'role may not call itself.';

-- Arrange helpers for the credit tests (pgTAP, sql/tests). Test databases only.
--
-- Security definer (test databases only): they arrange and read as the test's
-- superuser whatever role the test currently acts as. Pools are funded through
-- grant_credits, never by writing a balance, so the ledger always matches
-- (credit_consistency_check stays empty).
--
--   select tests.create_user('user_alice', p_personal_credits => 50);
--   select tests.create_org('org_acme', 'Acme', 'cus_acme');
--   select tests.create_subscription('org_acme', 'active', 100);
--   select tests.create_seat('org_acme', 'user_alice', 'member', 'active');

create or replace function tests.create_user(
    p_clerk_user_id text,
    p_personal_credits numeric default 0,
    p_email text default null
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    insert into public.users (clerk_user_id, email)
    values (p_clerk_user_id, coalesce(p_email, p_clerk_user_id || '@example.test'))
    returning id into v_id;
    if p_personal_credits > 0 then
        perform public.grant_credits(
            p_personal_credits, 'test fixture: personal credits', p_clerk_user_id => p_clerk_user_id
        );
    end if;
    return v_id;
end
$$;

create or replace function tests.create_org(
    p_clerk_org_id text,
    p_name text default null,
    p_stripe_customer_id text default null
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    insert into public.organizations (clerk_org_id, name, stripe_customer_id)
    values (p_clerk_org_id, coalesce(p_name, p_clerk_org_id), p_stripe_customer_id)
    returning id into v_id;
    return v_id;
end
$$;

-- The new subscription becomes the org's current one (an older current one
-- is cleared first) and its pool is funded with p_pool_credits.
create or replace function tests.create_subscription(
    p_clerk_org_id text,
    p_status text default 'active',
    p_pool_credits numeric default 0,
    p_stripe_subscription_id text default null,
    p_current_period_start timestamptz default '2026-01-01 00:00:00+00',
    p_current_period_end timestamptz default '2026-02-01 00:00:00+00'
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_org_id uuid;
    v_id uuid;
begin
    select o.id into strict v_org_id
    from public.organizations as o
    where o.clerk_org_id = p_clerk_org_id;

    update public.organization_subscriptions
    set is_current = false
    where organization_id = v_org_id and is_current;

    insert into public.organization_subscriptions (
        organization_id, stripe_subscription_id, status, is_current,
        current_period_start, current_period_end
    )
    values (
        v_org_id,
        coalesce(p_stripe_subscription_id, 'sub_' || pg_catalog.md5(pg_catalog.random()::text)),
        'active', true, p_current_period_start, p_current_period_end
    )
    returning id into v_id;

    if p_pool_credits > 0 then
        perform public.grant_credits(
            p_pool_credits, 'test fixture: pool credits', p_clerk_org_id => p_clerk_org_id
        );
    end if;
    -- Funded while active; then given the status the story asks for.
    update public.organization_subscriptions set status = p_status where id = v_id;
    return v_id;
end
$$;

-- Creates the user (without credits) when they do not exist yet.
create or replace function tests.create_seat(
    p_clerk_org_id text,
    p_clerk_user_id text,
    p_role text default 'member',
    p_status text default 'active'
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_org_id uuid;
    v_user_id uuid;
    v_id uuid;
begin
    select o.id into strict v_org_id
    from public.organizations as o
    where o.clerk_org_id = p_clerk_org_id;

    select u.id into v_user_id
    from public.users as u
    where u.clerk_user_id = p_clerk_user_id;
    if v_user_id is null then
        v_user_id := tests.create_user(p_clerk_user_id);
    end if;

    insert into public.organization_seats (organization_id, user_id, role, status)
    values (v_org_id, v_user_id, p_role, p_status)
    returning id into v_id;
    return v_id;
end
$$;

-- The world of the RLS matrix (sql/tests/4x_rls_*.sql):
--   org_acme    pool 100; user_admin (admin, active), user_member (member,
--               active), user_exadmin (admin, revoked)
--   org_globex  pool 50; user_b (admin, active)
--   user_a      no seat; personal credits only
-- and one ledger row per person, described by who and where:
--   'a personal', 'member in acme', 'admin in acme', 'b in globex',
--   plus the fixture grants ('test fixture: ...').
create or replace function tests.create_rls_story()
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform tests.create_org('org_acme', 'Acme', 'cus_acme');
    perform tests.create_subscription('org_acme', 'active', 100, 'sub_acme');
    perform tests.create_seat('org_acme', 'user_admin', 'admin', 'active');
    perform tests.create_seat('org_acme', 'user_member', 'member', 'active');
    perform tests.create_seat('org_acme', 'user_exadmin', 'admin', 'revoked');
    perform tests.create_org('org_globex', 'Globex', 'cus_globex');
    perform tests.create_subscription('org_globex', 'active', 50, 'sub_globex');
    perform tests.create_seat('org_globex', 'user_b', 'admin', 'active');
    perform tests.create_user('user_a', p_personal_credits => 10);

    perform public.deduct_credits_pooled('user_a', 1, 'a personal');
    perform public.deduct_credits_pooled('user_member', 1, 'member in acme', 'org_acme');
    perform public.deduct_credits_pooled('user_admin', 1, 'admin in acme', 'org_acme');
    perform public.deduct_credits_pooled('user_b', 1, 'b in globex', 'org_globex');
end
$$;

-- Reads for assertions ---------------------------------------------------------

create or replace function tests.personal_balance(p_clerk_user_id text)
returns numeric
language sql
stable
security definer
set search_path = ''
as $$
    select u.credits_balance from public.users as u where u.clerk_user_id = p_clerk_user_id
$$;

-- The balance of the org's current subscription pool.
create or replace function tests.pool_balance(p_clerk_org_id text)
returns numeric
language sql
stable
security definer
set search_path = ''
as $$
    select sub.credits_balance
    from public.organization_subscriptions as sub
    inner join public.organizations as o on sub.organization_id = o.id
    where o.clerk_org_id = p_clerk_org_id and sub.is_current
$$;

create or replace function tests.ledger_count()
returns bigint
language sql
stable
security definer
set search_path = ''
as $$
    select count(*) from public.credit_transactions
$$;

create or replace function tests.seat_id(p_clerk_org_id text, p_clerk_user_id text)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
    select s.id
    from public.organization_seats as s
    inner join public.organizations as o on s.organization_id = o.id
    inner join public.users as u on s.user_id = u.id
    where o.clerk_org_id = p_clerk_org_id and u.clerk_user_id = p_clerk_user_id
$$;

-- What a seat's cap counts as spent, over all its periods (H2).
create or replace function tests.seat_spent(p_clerk_org_id text, p_clerk_user_id text)
returns numeric
language sql
stable
security definer
set search_path = ''
as $$
    select coalesce(sum(c.spent), 0)
    from public.seat_cap_spend as c
    where c.seat_id = tests.seat_id(p_clerk_org_id, p_clerk_user_id)
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;

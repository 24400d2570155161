-- Variants measured by `python -m bench --scenario experiments`, loaded into
-- the benchmark database only (schema bench_exp), never into a project.

create schema if not exists bench_exp;
grant usage on schema bench_exp to service_role;

-- deduct_credits_pooled as ONE statement ------------------------------------
-- Reads, checks, the conditional update and the ledger insert in a single
-- data-modifying CTE (no idempotency key); anything else, and every refusal,
-- is handed to public.deduct_credits_pooled. Measured against the migrated
-- function (read and check, then write): no better at one client, worse on a
-- hot pool, because a waiter that wakes up re-checks the whole join
-- (EvalPlanQual) while it holds the row. So the migration keeps two statements.

create function bench_exp.deduct_single_statement(
    p_clerk_user_id text,
    p_amount numeric,
    p_description text,
    p_clerk_org_id text default null,
    p_idempotency_key text default null,
    p_context jsonb default '{}'
)
returns public.credit_result
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_amount numeric(20, 4);
    v_context jsonb;
    v_new_id uuid;
    v_transaction_id uuid;
    v_balance numeric;
begin
    if p_idempotency_key is not null then
        return public.deduct_credits_pooled(p_clerk_user_id, p_amount, p_description, p_clerk_org_id, p_idempotency_key, p_context);
    end if;
    v_amount := private.valid_credit_amount(p_amount);
    v_context := private.valid_credit_context(p_description, p_idempotency_key, p_context);
    if p_clerk_user_id is null then
        raise exception 'p_clerk_user_id must not be null' using errcode = '22023';
    end if;
    v_new_id := pg_catalog.encode(
        pg_catalog.set_bit(pg_catalog.set_bit(pg_catalog.overlay(
            pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
            pg_catalog.substr(pg_catalog.int8send(
                (extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint), 3),
            1, 6), 52, 1), 53, 1),
        'hex')::uuid;

    if p_clerk_org_id is null then
        with debited as (
            update public.users as u
            set credits_balance = u.credits_balance - v_amount
            where u.clerk_user_id = p_clerk_user_id and u.credits_balance >= v_amount
            returning u.id, u.credits_balance
        )
        insert into public.credit_transactions (
            id, pool, kind, user_id, amount, balance_after, description,
            idempotency_key, request_fingerprint, metadata
        )
        select
            v_new_id, 'personal', 'deduction', d.id, -v_amount, d.credits_balance,
            p_description, null, null,
            pg_catalog.jsonb_build_object('pool', 'personal', 'clerk_user_id', p_clerk_user_id, 'context', v_context)
        from debited as d
        returning id, balance_after into v_transaction_id, v_balance;
    else
        with attribution as (
            select
                u.id as user_id, o.id as org_id, o.name as org_name,
                o.stripe_customer_id, s.id as seat_id, s.role as seat_role, sub.id as sub_id
            from public.organizations as o
            inner join public.users as u on u.clerk_user_id = p_clerk_user_id
            inner join public.organization_seats as s
                on s.organization_id = o.id and s.user_id = u.id and s.status = 'active'
            inner join public.organization_subscriptions as sub
                on sub.organization_id = o.id and sub.is_current
            where o.clerk_org_id = p_clerk_org_id
                and private.subscription_allows_spending(sub.status)
        ),
        debited as (
            update public.organization_subscriptions as sub
            set credits_balance = sub.credits_balance - v_amount
            from attribution as a
            where sub.id = a.sub_id and sub.credits_balance >= v_amount
            returning sub.credits_balance, sub.current_period_start, sub.current_period_end,
                a.user_id, a.org_id, a.org_name, a.stripe_customer_id, a.seat_id, a.seat_role, a.sub_id
        )
        insert into public.credit_transactions (
            id, pool, kind, user_id, organization_id, organization_subscription_id, seat_id,
            amount, balance_after, description, idempotency_key, request_fingerprint,
            subscription_period_start, subscription_period_end, metadata
        )
        select
            v_new_id, 'organization', 'deduction', d.user_id, d.org_id, d.sub_id, d.seat_id,
            -v_amount, d.credits_balance, p_description, null, null,
            d.current_period_start, d.current_period_end,
            pg_catalog.jsonb_build_object(
                'pool', 'organization',
                'clerk_org_id', p_clerk_org_id,
                'organization_id', d.org_id,
                'organization_name', d.org_name,
                'stripe_customer_id', d.stripe_customer_id,
                'organization_subscription_id', d.sub_id,
                'seat_id', d.seat_id,
                'seat_role', d.seat_role,
                'clerk_user_id', p_clerk_user_id,
                'context', v_context
            )
        from debited as d
        returning id, balance_after into v_transaction_id, v_balance;
    end if;

    if v_transaction_id is null then
        -- refused (or raced): the full path finds the reason, or spends
        return public.deduct_credits_pooled(p_clerk_user_id, p_amount, p_description, p_clerk_org_id, p_idempotency_key, p_context);
    end if;
    return row(
        true, case when p_clerk_org_id is null then 'personal' else 'organization' end,
        null, v_transaction_id, v_amount, v_balance, false
    )::public.credit_result;
end
$$;
grant execute on function bench_exp.deduct_single_statement(
    text, numeric, text, text, text, jsonb
) to service_role;

-- resolve_org_attribution as it was first written: language sql -------------
-- A sql function with a SET clause is never inlined and is planned on every
-- call; the migration now uses plpgsql, whose plan is cached.

create function bench_exp.resolve_org_attribution_sql(p_clerk_user_id text, p_clerk_org_id text)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
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
$$;

grant execute on function bench_exp.resolve_org_attribution_sql(text, text) to service_role;

-- Write order: the ledger row before or after the pool update --------------
-- Two plpgsql functions doing the same two statements on the hot org pool
-- (ids from bench_exp.hot_members, so no reads or checks), in either order.
-- "ledger last" is the migrated order: the update locks the pool row and
-- returns balance_after, then the insert (its index entries, its three
-- foreign-key checks) runs while the row stays locked. "ledger first" inserts
-- before taking the lock, as PERFORMANCE.md suggests, and so cannot know
-- balance_after: it writes 0 there. It measures what the contract's
-- balance_after ("pool balance right after this row, in commit order")
-- costs on a hot pool; it is not a correct deduction.

create function bench_exp.deduct_ledger_last(p_client_id int)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    m record;
    v_balance numeric;
    v_start timestamptz;
    v_end timestamptz;
begin
    select h.user_id, h.seat_id, h.org_id, h.sub_id into m
    from bench_exp.hot_members as h
    where h.client_id = p_client_id;

    update public.organization_subscriptions as sub
    set credits_balance = sub.credits_balance - 1
    where sub.id = m.sub_id and sub.credits_balance >= 1
    returning sub.credits_balance, sub.current_period_start, sub.current_period_end
    into v_balance, v_start, v_end;
    if v_balance is null then
        raise exception 'pool empty';
    end if;

    insert into public.credit_transactions (
        pool, kind, user_id, organization_id, organization_subscription_id, seat_id,
        amount, balance_after, description, subscription_period_start,
        subscription_period_end, metadata
    )
    values (
        'organization', 'deduction', m.user_id, m.org_id, m.sub_id, m.seat_id,
        -1, v_balance, 'bench', v_start, v_end,
        pg_catalog.jsonb_build_object(
            'pool', 'organization', 'clerk_org_id', 'org_hot', 'organization_id', m.org_id,
            'organization_name', 'Hot Org', 'stripe_customer_id', 'cus_hot',
            'organization_subscription_id', m.sub_id, 'seat_id', m.seat_id,
            'seat_role', 'member', 'clerk_user_id', 'user_hot_' || p_client_id,
            'context', '{}'::jsonb
        )
    );
end
$$;

create function bench_exp.deduct_ledger_first(p_client_id int)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    m record;
    v_balance numeric;
begin
    select h.user_id, h.seat_id, h.org_id, h.sub_id, sub.current_period_start,
        sub.current_period_end
    into m
    from bench_exp.hot_members as h
    inner join public.organization_subscriptions as sub on sub.id = h.sub_id
    where h.client_id = p_client_id;

    insert into public.credit_transactions (
        pool, kind, user_id, organization_id, organization_subscription_id, seat_id,
        amount, balance_after, description, subscription_period_start,
        subscription_period_end, metadata
    )
    values (
        'organization', 'deduction', m.user_id, m.org_id, m.sub_id, m.seat_id,
        -1, 0, 'bench', m.current_period_start, m.current_period_end,
        pg_catalog.jsonb_build_object(
            'pool', 'organization', 'clerk_org_id', 'org_hot', 'organization_id', m.org_id,
            'organization_name', 'Hot Org', 'stripe_customer_id', 'cus_hot',
            'organization_subscription_id', m.sub_id, 'seat_id', m.seat_id,
            'seat_role', 'member', 'clerk_user_id', 'user_hot_' || p_client_id,
            'context', '{}'::jsonb
        )
    );

    -- Last write: the row lock is held from here to commit only.
    update public.organization_subscriptions as sub
    set credits_balance = sub.credits_balance - 1
    where sub.id = m.sub_id and sub.credits_balance >= 1
    returning sub.credits_balance into v_balance;
    if v_balance is null then
        raise exception 'pool empty';  -- rolls the ledger row back with it
    end if;
end
$$;

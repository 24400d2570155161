-- deduct_credits_pooled as it was before seat caps and low-balance alerts
-- (issue 20), loaded into the benchmark database only (schema bench_before),
-- never into a project. `python -m bench --scenario seat-caps` runs it and
-- the migrated function back to back on an uncapped seat of a pool without
-- thresholds: what the cap and alert reads cost a deduction that uses
-- neither. Copied verbatim from supabase/migrations/20260101000400 at the
-- commit before issue 20; only the schema of the function differs.

create schema if not exists bench_before;
grant usage on schema bench_before to service_role;

create function bench_before.deduct_credits_pooled(
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
    v_fingerprint text;
    v_replay public.credit_result;
    v_user_id uuid;
    v_org_id uuid;
    v_org_name text;
    v_stripe_customer_id text;
    v_seat_id uuid;
    v_seat_role text;
    v_seat_status text;
    v_subscription_id uuid;
    v_subscription_status text;
    v_metadata jsonb;
    v_transaction_id uuid;
    v_new_id uuid := private.uuid_v7();  -- made here, not under the row lock
    v_balance numeric;
begin
    v_amount := private.valid_credit_amount(p_amount);
    v_context := private.valid_credit_context(p_description, p_idempotency_key, p_context);
    if p_clerk_user_id is null then
        raise exception 'p_clerk_user_id must not be null' using errcode = '22023';
    end if;
    if p_idempotency_key is not null then
        v_fingerprint := private.credit_request_fingerprint(
            pg_catalog.jsonb_build_array(
                'deduction', p_clerk_user_id, p_clerk_org_id, v_amount, p_description, v_context
            )
        );
    end if;

    -- Personal credits: only when no organization is named.
    if p_clerk_org_id is null then
        select u.id into v_user_id
        from public.users as u
        where u.clerk_user_id = p_clerk_user_id;
        if v_user_id is null then
            return row(false, 'personal', 'unknown_user', null, null, null, false)::public.credit_result;
        end if;

        if p_idempotency_key is not null then
            v_replay := private.idempotent_replay(
                'personal', v_user_id, p_idempotency_key, v_fingerprint, 'deduction', v_user_id
            );
            if v_replay.ok then
                return v_replay;
            end if;
        end if;

        v_metadata := pg_catalog.jsonb_build_object(
            'pool', 'personal',
            'clerk_user_id', p_clerk_user_id,
            'context', v_context
        );

        with debited as (
            update public.users as u
            set credits_balance = u.credits_balance - v_amount
            where u.id = v_user_id and u.credits_balance >= v_amount
            returning u.credits_balance
        )

        insert into public.credit_transactions (
            id, pool, kind, user_id, amount, balance_after, description,
            idempotency_key, request_fingerprint, metadata
        )
        select
            v_new_id, 'personal', 'deduction', v_user_id, -v_amount, d.credits_balance,
            p_description, p_idempotency_key, v_fingerprint, v_metadata
        from debited as d
        returning id, balance_after into v_transaction_id, v_balance;

        if v_transaction_id is null then
            select u.credits_balance into v_balance
            from public.users as u
            where u.id = v_user_id;
            return row(
                false, 'personal', 'insufficient_credits', null, null, v_balance, false
            )::public.credit_result;
        end if;
        return row(
            true, 'personal', null, v_transaction_id, v_amount, v_balance, false
        )::public.credit_result;
    end if;

    -- The organization's pool. Never personal credits from here on (C2).
    select
        u.id, o.id, o.name, o.stripe_customer_id, s.id, s.role, s.status,
        sub.id, sub.status
    into
        v_user_id, v_org_id, v_org_name, v_stripe_customer_id, v_seat_id, v_seat_role,
        v_seat_status, v_subscription_id, v_subscription_status
    from (values (1)) as one (x)
    left join public.users as u
        on u.clerk_user_id = p_clerk_user_id
    left join public.organizations as o
        on o.clerk_org_id = p_clerk_org_id
    -- lateral ... limit 1: one index probe each, never a hash of a table
    left join lateral (
        select s.id, s.role, s.status
        from public.organization_seats as s
        where s.organization_id = o.id and s.user_id = u.id
        limit 1
    ) as s on true
    left join lateral (
        select sub.id, sub.status
        from public.organization_subscriptions as sub
        where sub.organization_id = o.id and sub.is_current
        limit 1
    ) as sub on true;

    if v_user_id is null then
        return row(false, 'organization', 'unknown_user', null, null, null, false)::public.credit_result;
    elsif v_org_id is null then
        return row(
            false, 'organization', 'unknown_organization', null, null, null, false
        )::public.credit_result;
    end if;

    -- A repeat of a deduction that succeeded replays it, even if the seat has
    -- been revoked since: the retry refers to what already happened.
    if p_idempotency_key is not null then
        v_replay := private.idempotent_replay(
            'organization', v_org_id, p_idempotency_key, v_fingerprint, 'deduction', v_user_id
        );
        if v_replay.ok then
            return v_replay;
        end if;
    end if;

    if v_seat_status is distinct from 'active' then
        return row(false, 'organization', 'no_active_seat', null, null, null, false)::public.credit_result;
    elsif v_subscription_id is null or not private.subscription_allows_spending(v_subscription_status) then
        return row(
            false, 'organization', 'no_active_subscription', null, null, null, false
        )::public.credit_result;
    end if;

    v_metadata := pg_catalog.jsonb_build_object(
        'pool', 'organization',
        'clerk_org_id', p_clerk_org_id,
        'organization_id', v_org_id,
        'organization_name', v_org_name,
        'stripe_customer_id', v_stripe_customer_id,
        'organization_subscription_id', v_subscription_id,
        'seat_id', v_seat_id,
        'seat_role', v_seat_role,
        'clerk_user_id', p_clerk_user_id,
        'context', v_context
    );

    with debited as (
        update public.organization_subscriptions as sub
        set credits_balance = sub.credits_balance - v_amount
        where sub.id = v_subscription_id and sub.credits_balance >= v_amount
        returning sub.credits_balance, sub.current_period_start, sub.current_period_end
    )

    insert into public.credit_transactions (
        id, pool, kind, user_id, organization_id, organization_subscription_id, seat_id,
        amount, balance_after, description, idempotency_key, request_fingerprint,
        subscription_period_start, subscription_period_end, metadata
    )
    select
        v_new_id, 'organization', 'deduction', v_user_id, v_org_id, v_subscription_id, v_seat_id,
        -v_amount, d.credits_balance, p_description, p_idempotency_key, v_fingerprint,
        d.current_period_start, d.current_period_end, v_metadata
    from debited as d
    returning id, balance_after into v_transaction_id, v_balance;

    if v_transaction_id is null then
        select sub.credits_balance into v_balance
        from public.organization_subscriptions as sub
        where sub.id = v_subscription_id;
        return row(
            false, 'organization', 'insufficient_credits', null, null, v_balance, false
        )::public.credit_result;
    end if;
    return row(
        true, 'organization', null, v_transaction_id, v_amount, v_balance, false
    )::public.credit_result;
end
$$;

revoke all on function bench_before.deduct_credits_pooled(text, numeric, text, text, text, jsonb)
from public;
grant execute on function bench_before.deduct_credits_pooled(text, numeric, text, text, text, jsonb)
to service_role;

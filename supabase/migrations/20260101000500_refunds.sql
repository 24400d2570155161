-- Refunds: a new ledger row that points at the deduction it reverses and
-- gives the credits back to the pool they came from (the original's personal
-- credits or subscription pool, whatever is current now). Refunds of one
-- deduction never add up to more than it took.

create function public.refund_credits(
    p_transaction_id uuid,
    p_amount numeric default null,
    p_description text default null,
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
    v_description text;
    v_fingerprint text;
    v_replay public.credit_result;
    v_original public.credit_transactions;
    v_owner_id uuid;
    v_remaining numeric;
    v_transaction_id uuid;
    v_balance numeric;
begin
    if p_transaction_id is null then
        raise exception 'p_transaction_id must not be null' using errcode = '22023';
    end if;
    if p_amount is not null then
        v_amount := private.valid_credit_amount(p_amount);
    end if;
    -- A null description becomes 'Refund: <original description>' below.
    v_context := private.valid_credit_context(
        coalesce(p_description, 'refund'), p_idempotency_key, p_context
    );

    select t.* into v_original
    from public.credit_transactions as t
    where t.id = p_transaction_id;

    if v_original.id is null then
        return private.credit_refusal(null, 'unknown_transaction');
    elsif v_original.kind <> 'deduction' then
        return private.credit_refusal(v_original.pool::text, 'not_refundable');
    end if;

    v_owner_id := case v_original.pool
        when 'organization' then v_original.organization_id
        else v_original.user_id
    end;

    if p_idempotency_key is not null then
        v_fingerprint := private.credit_request_fingerprint(
            pg_catalog.jsonb_build_array(
                'refund', p_transaction_id, v_amount, p_description, v_context
            )
        );
        v_replay := private.idempotent_replay(
            v_original.pool::text, v_owner_id, p_idempotency_key, v_fingerprint, 'refund', null
        );
        if v_replay.ok then
            return v_replay;
        end if;
    end if;

    -- One refund of a given deduction at a time, so two concurrent refunds
    -- cannot both see the same remainder.
    perform pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('credit_refund:' || p_transaction_id::text, 0)
    );

    select -v_original.amount - coalesce(sum(t.amount), 0) into v_remaining
    from public.credit_transactions as t
    where t.refund_of_transaction_id = p_transaction_id;

    v_amount := coalesce(v_amount, v_remaining);
    if v_remaining <= 0 or v_amount > v_remaining then
        return private.credit_refusal(v_original.pool::text, 'refund_exceeds_remaining');
    end if;

    v_description := coalesce(
        p_description, pg_catalog.left('Refund: ' || v_original.description, 500)
    );

    if v_original.pool = 'personal' then
        with credited as (
            update public.users as u
            set credits_balance = u.credits_balance + v_amount
            where u.id = v_original.user_id
            returning u.credits_balance
        )

        insert into public.credit_transactions (
            pool, kind, user_id, amount, balance_after, description,
            idempotency_key, request_fingerprint, refund_of_transaction_id, metadata
        )
        select
            'personal', 'refund', v_original.user_id, v_amount, c.credits_balance,
            v_description, p_idempotency_key, v_fingerprint, p_transaction_id,
            (v_original.metadata - 'context')
            || pg_catalog.jsonb_build_object('refund_of', p_transaction_id, 'context', v_context)
        from credited as c
        returning id, balance_after into v_transaction_id, v_balance;
    else
        with credited as (
            update public.organization_subscriptions as sub
            set credits_balance = sub.credits_balance + v_amount
            where sub.id = v_original.organization_subscription_id
            returning sub.credits_balance
        )

        insert into public.credit_transactions (
            pool, kind, user_id, organization_id, organization_subscription_id, seat_id,
            amount, balance_after, description, idempotency_key, request_fingerprint,
            refund_of_transaction_id, subscription_period_start, subscription_period_end,
            metadata
        )
        select
            'organization', 'refund', v_original.user_id, v_original.organization_id,
            v_original.organization_subscription_id, v_original.seat_id,
            v_amount, c.credits_balance, v_description, p_idempotency_key, v_fingerprint,
            p_transaction_id, v_original.subscription_period_start,
            v_original.subscription_period_end,
            (v_original.metadata - 'context')
            || pg_catalog.jsonb_build_object('refund_of', p_transaction_id, 'context', v_context)
        from credited as c
        returning id, balance_after into v_transaction_id, v_balance;
    end if;

    return row(
        true, v_original.pool::text, null, v_transaction_id, v_amount, v_balance, false
    )::public.credit_result;
end
$$;

revoke all on function public.refund_credits(uuid, numeric, text, text, jsonb)
from public, anon, authenticated, service_role;
grant execute on function public.refund_credits(uuid, numeric, text, text, jsonb)
to service_role;

comment on function public.refund_credits(uuid, numeric, text, text, jsonb) is
'Give back (part of) a deduction: a refund row pointing at p_transaction_id, credited to the '
'pool the deduction came from. p_amount null refunds what is left. Refusals: '
'unknown_transaction, not_refundable (not a deduction), refund_exceeds_remaining (more than '
'what is left of the original). p_description defaults to ''Refund: <original description>''. '
'Same validation (22023) and idempotency (replay / 23505; refund keys have their own namespace '
'per pool owner, L7) as the other credit RPCs. Service role only.';

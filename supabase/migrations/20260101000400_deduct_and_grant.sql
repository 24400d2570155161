-- Deductions and grants: the only ways a balance goes down or up (refunds
-- follow in 20260101000500_refunds).
--
-- Shape of every credit RPC, for a short pool-row lock (PERFORMANCE.md):
--   1. validate the arguments (SQLSTATE 22023 names the bad one);
--   2. read and check: user, org, seat, subscription (refusals return here,
--      having written nothing);
--   3. with an idempotency key: take a transaction-scoped advisory lock on
--      the key in its namespace (L7: a deduction's per spender and pool, a
--      grant's per pool owner), then replay an earlier result if there is one;
--   4. last, one statement: the conditional update of the pool row and the
--      ledger insert (a data-modifying CTE). The pool row is locked from that
--      statement until commit, and nothing else happens in between.
-- No exception blocks (subtransactions) anywhere on this path.
--
-- Checks in step 2 read the state as of the call: a seat revoked or a
-- subscription cancelled while a deduction is already past step 2 does not
-- stop that one deduction. The balance, the contended value, is re-checked
-- under the row lock by the update itself.

-- Validation -----------------------------------------------------------------

create function private.valid_credit_amount(p_amount numeric)
returns numeric
language plpgsql
immutable
set search_path = ''
as $$
begin
    if p_amount is null then
        raise exception 'p_amount must not be null' using errcode = '22023';
    elsif p_amount = 'NaN'::numeric then
        raise exception 'p_amount must be a number, not NaN' using errcode = '22023';
    elsif p_amount in ('Infinity'::numeric, '-Infinity'::numeric) then
        raise exception 'p_amount must be finite' using errcode = '22023';
    elsif p_amount <= 0 then
        raise exception 'p_amount must be greater than 0 (got %)', p_amount
            using errcode = '22023';
    elsif p_amount > 1000000000000 then
        raise exception 'p_amount must not exceed 1000000000000 (got %)', p_amount
            using errcode = '22023';
    elsif p_amount <> pg_catalog.round(p_amount, 4) then
        raise exception 'p_amount must have at most 4 decimal places (got %)', p_amount
            using errcode = '22023';
    end if;
    return pg_catalog.round(p_amount, 4);
end
$$;

revoke all on function private.valid_credit_amount(numeric)
from public, anon, authenticated, service_role;

comment on function private.valid_credit_amount(numeric) is
'p_amount rounded to the ledger scale, or SQLSTATE 22023 naming p_amount: null, NaN, '
'infinite, not > 0, above 1e12, more than 4 decimals.';

create function private.valid_credit_context(
    p_description text,
    p_idempotency_key text,
    p_context jsonb
)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
    if p_description is null or pg_catalog.btrim(p_description, E' \t\r\n') = '' then
        raise exception 'p_description must not be empty' using errcode = '22023';
    elsif pg_catalog.char_length(p_description) > 500 then
        raise exception 'p_description must be at most 500 characters' using errcode = '22023';
    elsif p_idempotency_key = '' then
        raise exception 'p_idempotency_key must not be empty (pass null for none)'
            using errcode = '22023';
    elsif pg_catalog.char_length(p_idempotency_key) > 200 then
        raise exception 'p_idempotency_key must be at most 200 characters'
            using errcode = '22023';
    elsif p_context is null then
        return '{}'::jsonb;
    elsif pg_catalog.jsonb_typeof(p_context) <> 'object' then
        raise exception 'p_context must be a JSON object (got %)', pg_catalog.jsonb_typeof(p_context)
            using errcode = '22023';
    elsif pg_catalog.octet_length(p_context::text) > 8192 then
        raise exception 'p_context must be at most 8192 bytes as JSON text'
            using errcode = '22023';
    end if;
    return p_context;
end
$$;

revoke all on function private.valid_credit_context(text, text, jsonb)
from public, anon, authenticated, service_role;

comment on function private.valid_credit_context(text, text, jsonb) is
'p_context (null becomes {}), or SQLSTATE 22023 naming the argument: p_description empty or '
'over 500 characters, p_idempotency_key empty or over 200, p_context not an object or over 8 KB.';

-- Idempotency ----------------------------------------------------------------

create function private.credit_request_fingerprint(p_request jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
    return pg_catalog.encode(
        pg_catalog.sha256(pg_catalog.convert_to(p_request::text, 'UTF8')), 'hex'
    );
end
$$;

revoke all on function private.credit_request_fingerprint(jsonb)
from public, anon, authenticated, service_role;

comment on function private.credit_request_fingerprint(jsonb) is
'sha256 (hex) of the canonical JSON of a request''s arguments.';

create function private.idempotent_replay(
    p_pool text,
    p_owner_id uuid,
    p_idempotency_key text,
    p_fingerprint text,
    p_kind text,
    p_user_id uuid
)
returns public.credit_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_id uuid;
    v_amount numeric;
    v_balance numeric;
    v_fingerprint text;
begin
    -- The namespace of a key (L7): a deduction's key belongs to its spender
    -- in its pool; a grant's or refund's to the pool owner and the kind.
    -- Serialize requests that share a namespaced key (held until commit), so
    -- a concurrent repeat waits for the first and then replays it.
    perform pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended(
            'credit_transactions:' || p_kind || ':' || p_owner_id::text || ':'
            || coalesce(p_user_id::text, '') || ':' || p_idempotency_key,
            0
        )
    );

    -- One query per namespace, each matching its partial unique index.
    if p_kind = 'deduction' and p_pool = 'organization' then
        select t.id, t.amount, t.balance_after, t.request_fingerprint
        into v_id, v_amount, v_balance, v_fingerprint
        from public.credit_transactions as t
        where
            t.pool = 'organization'
            and t.kind = 'deduction'
            and t.organization_id = p_owner_id
            and t.user_id = p_user_id
            and t.idempotency_key = p_idempotency_key;
    elsif p_kind = 'deduction' then
        select t.id, t.amount, t.balance_after, t.request_fingerprint
        into v_id, v_amount, v_balance, v_fingerprint
        from public.credit_transactions as t
        where
            t.pool = 'personal'
            and t.kind = 'deduction'
            and t.user_id = p_owner_id
            and t.idempotency_key = p_idempotency_key;
    elsif p_pool = 'organization' then
        select t.id, t.amount, t.balance_after, t.request_fingerprint
        into v_id, v_amount, v_balance, v_fingerprint
        from public.credit_transactions as t
        where
            t.pool = 'organization'
            and t.kind <> 'deduction'
            and t.organization_id = p_owner_id
            and t.kind = p_kind::public.credit_kind
            and t.idempotency_key = p_idempotency_key;
    else
        select t.id, t.amount, t.balance_after, t.request_fingerprint
        into v_id, v_amount, v_balance, v_fingerprint
        from public.credit_transactions as t
        where
            t.pool = 'personal'
            and t.kind <> 'deduction'
            and t.user_id = p_owner_id
            and t.kind = p_kind::public.credit_kind
            and t.idempotency_key = p_idempotency_key;
    end if;

    if v_id is null then
        return null;
    elsif v_fingerprint <> p_fingerprint then
        raise exception 'p_idempotency_key was already used with different arguments'
            using
                errcode = '23505',
                detail = pg_catalog.format('first used by credit transaction %s', v_id),
                hint = 'Use a new idempotency key for a new request.';
    end if;
    return row(
        true, p_pool, null, v_id, pg_catalog.abs(v_amount), v_balance, true
    )::public.credit_result;
end
$$;

revoke all on function private.idempotent_replay(text, uuid, text, text, text, uuid)
from public, anon, authenticated, service_role;

comment on function private.idempotent_replay(text, uuid, text, text, text, uuid) is
'Locks the key in its namespace until commit and returns the first result for it flagged '
'replayed, or null when the key is new there. Namespaces (L7): p_kind deduction -> (pool, '
'p_user_id, key); grant / refund -> (pool owner, kind, key). Same key in the same namespace '
'with other arguments: SQLSTATE 23505.';

-- The personal pool's opening ---------------------------------------------------

create type private.personal_opening as (
    user_id uuid,
    early public.credit_result,
    metadata jsonb
);

comment on type private.personal_opening is
'What private.personal_pool_opening returns to deduct_credits_pooled and grant_credits.';

create function private.personal_pool_opening(
    p_clerk_user_id text,
    p_kind text,
    p_idempotency_key text,
    p_fingerprint text,
    p_context jsonb
)
returns private.personal_opening
language plpgsql
volatile
set search_path = ''
as $$
declare
    v private.personal_opening;
begin
    select u.id into v.user_id
    from public.users as u
    where u.clerk_user_id = p_clerk_user_id;
    if v.user_id is null then
        v.early := private.credit_refusal('personal', 'unknown_user');
        return v;
    end if;

    if p_idempotency_key is not null then
        v.early := private.idempotent_replay(
            'personal', v.user_id, p_idempotency_key, p_fingerprint, p_kind,
            case when p_kind = 'deduction' then v.user_id end
        );
    end if;

    v.metadata := pg_catalog.jsonb_build_object(
        'pool', 'personal',
        'clerk_user_id', p_clerk_user_id,
        'context', p_context
    );
    return v;
end
$$;

revoke all on function private.personal_pool_opening(text, text, text, text, jsonb)
from public, anon, authenticated, service_role;

comment on function private.personal_pool_opening(text, text, text, text, jsonb) is
'Steps 2-3 of a personal-pool deduction or grant (p_kind): the user (user_id), an early '
'result (early: the unknown_user refusal or the replay of an earlier result for the key; '
'null to go on) and the ledger metadata {pool, clerk_user_id, context}.';

-- deduct_credits_pooled ------------------------------------------------------

create function public.deduct_credits_pooled(
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
    v_opening private.personal_opening;
    v_user_id uuid;
    v_org_id uuid;
    v_org_name text;
    v_stripe_customer_id text;
    v_seat_id uuid;
    v_seat_role text;
    v_seat_status text;
    v_subscription_id uuid;
    v_subscription_status text;
    v_cap numeric;  -- H2: the seat's cap (own or org default); null = none
    v_capped boolean := false;
    v_alerts boolean;  -- H3: the pool has low-balance thresholds
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
        v_opening := private.personal_pool_opening(
            p_clerk_user_id, 'deduction', p_idempotency_key, v_fingerprint, v_context
        );
        if (v_opening.early).ok is not null then
            return v_opening.early;  -- unknown_user, or the replay of an earlier result
        end if;
        v_user_id := v_opening.user_id;
        v_metadata := v_opening.metadata;

        -- Holds (H1, 20260114000000_credit_holds) reserve held of the balance.
        for v_try in 1 .. 2 loop
            with debited as (
                update public.users as u
                set credits_balance = u.credits_balance - v_amount
                where u.id = v_user_id and u.credits_balance - u.held >= v_amount
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
            exit when v_transaction_id is not null or v_try = 2;
            -- Refused: sweep expired holds (lazily, H1) if any hold, and retry once.
            exit when not exists (select from public.users as u where u.id = v_user_id and u.held > 0);
            exit when private.sweep_expired_holds('personal', v_user_id) = 0;
        end loop;

        if v_transaction_id is null then
            select u.credits_balance - u.held into v_balance
            from public.users as u
            where u.id = v_user_id;
            return private.credit_refusal('personal', 'insufficient_credits', v_balance);
        end if;
        return row(
            true, 'personal', null, v_transaction_id, v_amount, v_balance, false
        )::public.credit_result;
    end if;

    -- The organization's pool. Never personal credits from here on (C2).
    -- The cap columns (20260112000000_seat_caps) and the pool's thresholds
    -- (20260113000000_low_balance_alerts) come with this read: an uncapped
    -- seat and a pool without thresholds pay for nothing more.
    select
        u.id, o.id, o.name, o.stripe_customer_id, s.id, s.role, s.status,
        sub.id, sub.status, coalesce(s.spend_cap, o.default_seat_cap),
        sub.low_balance_thresholds is not null
    into
        v_user_id, v_org_id, v_org_name, v_stripe_customer_id, v_seat_id, v_seat_role,
        v_seat_status, v_subscription_id, v_subscription_status, v_cap, v_alerts
    from (values (1)) as one (x)
    left join public.users as u
        on u.clerk_user_id = p_clerk_user_id
    left join public.organizations as o
        on o.clerk_org_id = p_clerk_org_id
    -- lateral ... limit 1: one index probe each, never a hash of a table
    left join lateral (
        select s.id, s.role, s.status, s.spend_cap
        from public.organization_seats as s
        where s.organization_id = o.id and s.user_id = u.id
        limit 1
    ) as s on true
    left join lateral (
        select sub.id, sub.status, sub.low_balance_thresholds
        from public.organization_subscriptions as sub
        where sub.organization_id = o.id and sub.is_current
        limit 1
    ) as sub on true;

    if v_user_id is null then
        return private.credit_refusal('organization', 'unknown_user');
    elsif v_org_id is null then
        return private.credit_refusal('organization', 'unknown_organization');
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

    if not private.seat_allows_spending(v_seat_status) then
        return private.credit_refusal('organization', 'no_active_seat');
    elsif v_subscription_id is null or not private.subscription_allows_spending(v_subscription_status) then
        return private.credit_refusal('organization', 'no_active_subscription');
    end if;

    -- H2: a capped seat counts the amount against its period (its counter
    -- row locked until commit: before the pool row, never after it).
    if v_cap is not null then
        if not private.seat_cap_take(v_seat_id, v_amount) then
            return private.credit_refusal('organization', 'seat_cap_reached');
        end if;
        v_capped := true;
    end if;

    v_metadata := private.org_attribution_metadata(
        p_clerk_org_id, v_org_id, v_org_name, v_stripe_customer_id, v_subscription_id,
        v_seat_id, v_seat_role
    ) || pg_catalog.jsonb_build_object('clerk_user_id', p_clerk_user_id, 'context', v_context);

    -- Holds (H1, 20260114000000_credit_holds) reserve held of the balance.
    for v_try in 1 .. 2 loop
        with debited as (
            update public.organization_subscriptions as sub
            set credits_balance = sub.credits_balance - v_amount
            where sub.id = v_subscription_id and sub.credits_balance - sub.held >= v_amount
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
        exit when v_transaction_id is not null or v_try = 2;
        -- Refused: sweep expired holds (lazily, H1) if any hold, and retry once.
        exit when not exists (
            select from public.organization_subscriptions as sub
            where sub.id = v_subscription_id and sub.held > 0
        );
        exit when private.sweep_expired_holds('organization', v_subscription_id) = 0;
    end loop;

    if v_transaction_id is null then
        if v_capped then
            perform private.seat_cap_give_back(v_seat_id, v_amount, pg_catalog.now());
        end if;
        select sub.credits_balance - sub.held into v_balance
        from public.organization_subscriptions as sub
        where sub.id = v_subscription_id;
        return private.credit_refusal('organization', 'insufficient_credits', v_balance);
    end if;
    -- H3: only a pool with thresholds; an insert only on a crossing.
    if v_alerts then
        perform private.note_pool_debit(v_subscription_id, v_balance + v_amount, v_balance);
    end if;
    return row(
        true, 'organization', null, v_transaction_id, v_amount, v_balance, false
    )::public.credit_result;
end
$$;

revoke all on function public.deduct_credits_pooled(text, numeric, text, text, text, jsonb)
from public, anon, authenticated, service_role;
grant execute on function public.deduct_credits_pooled(text, numeric, text, text, text, jsonb)
to service_role;

comment on function public.deduct_credits_pooled(text, numeric, text, text, text, jsonb) is
'Spend credits (at most the pool''s available balance, credits_balance - held: holds, H1). '
'With p_clerk_org_id: from that org''s current subscription pool; requires an '
'active seat at call time and a subscription status that may spend (trialing, active); never '
'falls back to personal credits. Without: from the user''s personal credits. Refusals are '
'results (ok = false, reason: insufficient_credits, seat_cap_reached (the seat''s cap, H2), '
'no_active_seat, no_active_subscription, unknown_user, unknown_organization) and write '
'nothing. Bad input: SQLSTATE 22023 naming the argument. A repeated p_idempotency_key (per '
'spender and pool: L7) with the same arguments returns the first result with replayed = '
'true; with other arguments: SQLSTATE 23505. One ledger row per success, attribution in '
'metadata, p_context under metadata.context. Service role only.';

-- grant_credits --------------------------------------------------------------

create function public.grant_credits(
    p_amount numeric,
    p_description text,
    p_clerk_user_id text default null,
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
    v_opening private.personal_opening;
    v_user_id uuid;
    v_org_id uuid;
    v_org_name text;
    v_stripe_customer_id text;
    v_subscription_id uuid;
    v_metadata jsonb;
    v_transaction_id uuid;
    v_balance numeric;
begin
    v_amount := private.valid_credit_amount(p_amount);
    v_context := private.valid_credit_context(p_description, p_idempotency_key, p_context);
    if (p_clerk_user_id is null) = (p_clerk_org_id is null) then
        raise exception 'exactly one of p_clerk_user_id and p_clerk_org_id must be given'
            using errcode = '22023';
    end if;
    if p_idempotency_key is not null then
        v_fingerprint := private.credit_request_fingerprint(
            pg_catalog.jsonb_build_array(
                'grant', p_clerk_user_id, p_clerk_org_id, v_amount, p_description, v_context
            )
        );
    end if;

    if p_clerk_user_id is not null then
        v_opening := private.personal_pool_opening(
            p_clerk_user_id, 'grant', p_idempotency_key, v_fingerprint, v_context
        );
        if (v_opening.early).ok is not null then
            return v_opening.early;  -- unknown_user, or the replay of an earlier result
        end if;
        v_user_id := v_opening.user_id;
        v_metadata := v_opening.metadata;

        with credited as (
            update public.users as u
            set credits_balance = u.credits_balance + v_amount
            where u.id = v_user_id
            returning u.credits_balance
        )

        insert into public.credit_transactions (
            pool, kind, user_id, amount, balance_after, description,
            idempotency_key, request_fingerprint, metadata
        )
        select
            'personal', 'grant', v_user_id, v_amount, c.credits_balance, p_description,
            p_idempotency_key, v_fingerprint, v_metadata
        from credited as c
        returning id, balance_after into v_transaction_id, v_balance;

        return row(
            true, 'personal', null, v_transaction_id, v_amount, v_balance, false
        )::public.credit_result;
    end if;

    select o.id, o.name, o.stripe_customer_id, sub.id
    into v_org_id, v_org_name, v_stripe_customer_id, v_subscription_id
    from public.organizations as o
    left join public.organization_subscriptions as sub
        on o.id = sub.organization_id and sub.is_current
    where o.clerk_org_id = p_clerk_org_id;

    if v_org_id is null then
        return private.credit_refusal('organization', 'unknown_organization');
    end if;

    if p_idempotency_key is not null then
        v_replay := private.idempotent_replay(
            'organization', v_org_id, p_idempotency_key, v_fingerprint, 'grant', null
        );
        if v_replay.ok then
            return v_replay;
        end if;
    end if;

    if v_subscription_id is null then
        return private.credit_refusal('organization', 'no_active_subscription');
    end if;

    -- A grant is no seat's: seat_id and seat_role null.
    v_metadata := private.org_attribution_metadata(
        p_clerk_org_id, v_org_id, v_org_name, v_stripe_customer_id, v_subscription_id, null, null
    ) || pg_catalog.jsonb_build_object('context', v_context);

    with credited as (
        update public.organization_subscriptions as sub
        set credits_balance = sub.credits_balance + v_amount
        where sub.id = v_subscription_id
        returning sub.credits_balance, sub.current_period_start, sub.current_period_end
    )

    insert into public.credit_transactions (
        pool, kind, organization_id, organization_subscription_id,
        amount, balance_after, description, idempotency_key, request_fingerprint,
        subscription_period_start, subscription_period_end, metadata
    )
    select
        'organization', 'grant', v_org_id, v_subscription_id,
        v_amount, c.credits_balance, p_description, p_idempotency_key, v_fingerprint,
        c.current_period_start, c.current_period_end, v_metadata
    from credited as c
    returning id, balance_after into v_transaction_id, v_balance;

    return row(
        true, 'organization', null, v_transaction_id, v_amount, v_balance, false
    )::public.credit_result;
end
$$;

revoke all on function public.grant_credits(numeric, text, text, text, text, jsonb)
from public, anon, authenticated, service_role;
grant execute on function public.grant_credits(numeric, text, text, text, text, jsonb)
to service_role;

comment on function public.grant_credits(numeric, text, text, text, text, jsonb) is
'Add credits to exactly one pool: a user''s personal credits (p_clerk_user_id) or an org''s '
'current subscription pool (p_clerk_org_id; any status). Refusals: unknown_user, '
'unknown_organization, no_active_subscription (no current subscription). Same validation '
'(22023), idempotency (replay / 23505) and ledger rules as deduct_credits_pooled. '
'Service role only.';

-- Batched deductions from one organization pool (issue 17).
--
-- deduct_credits_pooled holds the pool row's lock from its update to its
-- commit, so one hot pool runs one deduction per durable commit. This RPC
-- applies many deductions to ONE org pool in one transaction: the pool row is
-- locked once, the deductions are applied in the order given (each its own
-- result, its own idempotency key, its own ledger row), the row is updated
-- once and committed once. The issuer's POST /api/extension/usage is the
-- caller that would coalesce concurrent requests for a pool into it;
-- deduct_credits_pooled is unchanged and keeps its contract for every caller.
--
-- Per element, exactly deduct_credits_pooled's rules: validation (22023, here
-- naming the element: the whole batch is refused and nothing written),
-- unknown_user, replay of an earlier result for the same key (L7 namespace:
-- spender and pool, the same fingerprint as a single call, so a retry may
-- cross from a batch to a single call and back and still charges once),
-- no_active_seat, insufficient_credits with the balance at that point.
-- balance_after of each ledger row: the pool balance right after that row,
-- in the order the rows were applied (the batch's order, batches and single
-- deductions serialized by the pool row lock), as for a single deduction.

create function public.deduct_credits_pooled_batch(
    p_clerk_org_id text,
    p_requests jsonb
)
returns table (
    ok boolean,
    pool text,
    reason text,
    transaction_id uuid,
    amount numeric,
    balance numeric,
    replayed boolean
)
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_n int;
    v_amounts numeric[] := '{}'::numeric[];
    v_contexts jsonb[] := '{}'::jsonb[];
    v_users text[] := '{}'::text[];
    v_descs text[] := '{}'::text[];
    v_keys text[] := '{}'::text[];
    v_fps text[] := '{}'::text[];
    v_org_id uuid;
    v_org_name text;
    v_stripe_customer_id text;
    v_org_metadata jsonb;
    v_sub_id uuid;
    v_sub_status text;
    v_start timestamptz;
    v_end timestamptz;
    v_bal numeric;
    v_held numeric;
    v_swept boolean := false;
    v_user_ids uuid[];
    v_seat_ids uuid[];
    v_seat_roles text[];
    v_seat_status text[];
    v_default_cap numeric;  -- H2: the org's default seat cap
    v_caps numeric[];  -- H2: each element's seat cap (own or default); null = none
    v_took boolean[] := '{}'::boolean[];  -- H2: the amount was counted against the cap
    v_alerts boolean := false;  -- H3: the pool has low-balance thresholds
    v_res public.credit_result[] := '{}'::public.credit_result[];
    v_done boolean[] := '{}'::boolean[];  -- v_res[i] set (a composite with a null field is not "not null")
    v_r public.credit_result;
    v_replay public.credit_result;
    -- the rows to insert, in order
    w_ids uuid[] := '{}'::uuid[];
    w_idx int[] := '{}'::int[];
    w_bal numeric[] := '{}'::numeric[];
    v_id uuid;
    v_new_ids uuid[] := '{}'::uuid[];  -- made before the row lock, like deduct_credits_pooled's
    i int;
    j int;
begin
    if p_clerk_org_id is null then
        raise exception 'p_clerk_org_id must not be null' using errcode = '22023';
    elsif p_requests is null or pg_catalog.jsonb_typeof(p_requests) <> 'array' then
        raise exception 'p_requests must be a JSON array' using errcode = '22023';
    end if;
    v_n := pg_catalog.jsonb_array_length(p_requests);
    if v_n = 0 or v_n > 1000 then
        raise exception 'p_requests must hold 1 to 1000 requests (got %)', v_n
            using errcode = '22023';
    end if;

    -- 1. Validate every element first: a bad one refuses the whole batch.
    -- One statement over the array (no per-element plpgsql).
    j := (
        select min(r.n)::int
        from pg_catalog.jsonb_array_elements(p_requests) with ordinality as r (e, n)
        where
            pg_catalog.jsonb_typeof(r.e) is distinct from 'object'
            or pg_catalog.jsonb_typeof(r.e -> 'amount') is distinct from 'number'
            or pg_catalog.jsonb_typeof(r.e -> 'clerk_user_id') is distinct from 'string'
    );
    if j is not null then
        raise exception 'p_requests[%] must be an object with clerk_user_id and amount', j - 1
            using errcode = '22023';
    end if;
    select
        pg_catalog.array_agg(x.amount order by x.n),
        pg_catalog.array_agg(x.context order by x.n),
        pg_catalog.array_agg(x.usr order by x.n),
        pg_catalog.array_agg(x.descr order by x.n),
        pg_catalog.array_agg(x.k order by x.n),
        pg_catalog.array_agg(
            case when x.k is not null then
                private.credit_request_fingerprint(
                    pg_catalog.jsonb_build_array(
                        'deduction', x.usr, p_clerk_org_id, x.amount, x.descr, x.context
                    )
                )
            end
            order by x.n
        ),
        -- uuid v7 (private.uuid_v7 inline), made before the row lock: time-ordered
        pg_catalog.array_agg(
            pg_catalog.encode(
                pg_catalog.set_bit(pg_catalog.set_bit(pg_catalog.overlay(
                    pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
                    pg_catalog.substr(pg_catalog.int8send(
                        (extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint
                    ), 3), 1, 6
                ), 52, 1), 53, 1),
                'hex'
            )::uuid
            order by x.n
        )
    into v_amounts, v_contexts, v_users, v_descs, v_keys, v_fps, v_new_ids
    from (
        select
            r.n,
            private.valid_credit_amount((r.e ->> 'amount')::numeric) as amount,
            private.valid_credit_context(
                r.e ->> 'description', r.e ->> 'idempotency_key',
                case when r.e -> 'context' <> 'null'::jsonb then r.e -> 'context' end
            ) as context,
            r.e ->> 'clerk_user_id' as usr,
            r.e ->> 'description' as descr,
            r.e ->> 'idempotency_key' as k
        from pg_catalog.jsonb_array_elements(p_requests) with ordinality as r (e, n)
    ) as x;

    -- 2. The organization and its current subscription, once.
    select o.id, o.name, o.stripe_customer_id, sub.id, sub.status, o.default_seat_cap
    into v_org_id, v_org_name, v_stripe_customer_id, v_sub_id, v_sub_status, v_default_cap
    from public.organizations as o
    left join lateral (
        select sub.id, sub.status
        from public.organization_subscriptions as sub
        where sub.organization_id = o.id and sub.is_current
        limit 1
    ) as sub on true
    where o.clerk_org_id = p_clerk_org_id;

    -- Each element's user and seat, in the batch's order.
    select
        pg_catalog.array_agg(u.id order by r.i),
        pg_catalog.array_agg(s.id order by r.i),
        pg_catalog.array_agg(s.role order by r.i),
        pg_catalog.array_agg(s.status order by r.i),
        pg_catalog.array_agg(coalesce(s.spend_cap, v_default_cap) order by r.i)
    into v_user_ids, v_seat_ids, v_seat_roles, v_seat_status, v_caps
    from pg_catalog.unnest(v_users) with ordinality as r (clerk_user_id, i)
    -- lateral ... limit 1: one index probe per element, never a hash of users
    left join lateral (
        select u.id
        from public.users as u
        where u.clerk_user_id = r.clerk_user_id
        limit 1
    ) as u on true
    left join lateral (
        select s.id, s.role, s.status, s.spend_cap
        from public.organization_seats as s
        where s.organization_id = v_org_id and s.user_id = u.id
        limit 1
    ) as s on true;

    -- 3. Keys: lock and replay, in key order (two batches sharing keys never
    -- wait on each other in a cycle), before the pool row, like a single call.
    for i in 1 .. v_n loop
        v_res := v_res || row(null, null, null, null, null, null, null)::public.credit_result;
        v_done := v_done || false;
        v_took := v_took || false;
    end loop;
    if v_org_id is not null then
        for i in
            select r.ix::int from rows from (pg_catalog.unnest(v_keys), pg_catalog.unnest(v_users)) with ordinality as r (k, usr, ix)
            where r.k is not null
            order by r.usr, r.k, r.ix
        loop
            if v_user_ids[i] is null then
                continue;
            end if;
            -- the same key earlier in this batch: the later one repeats it
            j := (
                select min(r.ix)::int
                from rows from (pg_catalog.unnest(v_keys), pg_catalog.unnest(v_users)) with ordinality as r (k, usr, ix)
                where r.k = v_keys[i] and r.usr = v_users[i] and r.ix < i
            );
            if j is not null then
                if v_fps[j] <> v_fps[i] then
                    raise exception 'p_idempotency_key was already used with different arguments'
                        using errcode = '23505',
                            detail = pg_catalog.format('p_requests[%s] and [%s]', j - 1, i - 1);
                end if;
                continue;  -- resolved after the pass below
            end if;
            v_replay := private.idempotent_replay(
                'organization', v_org_id, v_keys[i], v_fps[i], 'deduction', v_user_ids[i]
            );
            if v_replay.ok then
                v_res[i] := v_replay;
                v_done[i] := true;
            end if;
        end loop;
    end if;

    -- H2: the capped seats' counters, before the pool row (the order a
    -- single deduction takes them in), in seat order (two batches never wait
    -- on each other in a cycle), elements of one seat in batch order. Only
    -- elements that would reach the balance check; a refused take is
    -- seat_cap_reached.
    if v_org_id is not null and v_sub_id is not null
        and private.subscription_allows_spending(v_sub_status)
        and exists (select from pg_catalog.unnest(v_caps) as c (cap) where c.cap is not null)
    then
        for i in
            select r.ix::int
            from pg_catalog.unnest(v_seat_ids) with ordinality as r (seat, ix)
            where v_caps[r.ix] is not null
            order by r.seat, r.ix
        loop
            if v_done[i] or v_user_ids[i] is null
                or not private.seat_allows_spending(v_seat_status[i])
                or (v_keys[i] is not null and exists (
                    select from rows from (pg_catalog.unnest(v_keys), pg_catalog.unnest(v_users)) with ordinality as r (k, usr, ix)
                    where r.k = v_keys[i] and r.usr = v_users[i] and r.ix < i
                ))
            then
                continue;
            end if;
            if private.seat_cap_take(v_seat_ids[i], v_amounts[i]) then
                v_took[i] := true;
            else
                v_res[i] := private.credit_refusal('organization', 'seat_cap_reached');
                v_done[i] := true;
            end if;
        end loop;
    end if;

    -- 4. The pool row, locked once; then every element in order.
    if v_org_id is not null and v_sub_id is not null
        and private.subscription_allows_spending(v_sub_status)
    then
        select
            sub.credits_balance, sub.held, sub.current_period_start, sub.current_period_end,
            sub.low_balance_thresholds is not null
        into v_bal, v_held, v_start, v_end, v_alerts
        from public.organization_subscriptions as sub
        where sub.id = v_sub_id
        for no key update;
    end if;

    for i in 1 .. v_n loop
        if v_done[i] then
            continue;  -- replayed
        elsif v_user_ids[i] is null then
            v_res[i] := private.credit_refusal('organization', 'unknown_user');
        elsif v_org_id is null then
            v_res[i] := private.credit_refusal('organization', 'unknown_organization');
        elsif v_keys[i] is not null and exists (
            select from rows from (pg_catalog.unnest(v_keys), pg_catalog.unnest(v_users)) with ordinality as r (k, usr, ix)
            where r.k = v_keys[i] and r.usr = v_users[i] and r.ix < i
        ) then
            -- a repeat inside the batch: the first one's result, replayed
            j := (
                select min(r.ix)::int
                from rows from (pg_catalog.unnest(v_keys), pg_catalog.unnest(v_users)) with ordinality as r (k, usr, ix)
                where r.k = v_keys[i] and r.usr = v_users[i]
            );
            v_r := v_res[j];
            if v_r.ok then
                v_res[i] := row(true, 'organization', null, v_r.transaction_id, v_r.amount,
                    v_r.balance, true);
            else
                v_res[i] := v_r;
            end if;
        elsif not private.seat_allows_spending(v_seat_status[i]) then
            v_res[i] := private.credit_refusal('organization', 'no_active_seat');
        elsif v_bal is null then
            v_res[i] := private.credit_refusal('organization', 'no_active_subscription');
        else
            -- held: what holds reserve (H1, 20260114000000_credit_holds); expired
            -- holds in the way are swept once, lazily, under this row lock.
            if v_bal - v_held < v_amounts[i] and v_held > 0 and not v_swept then
                v_swept := true;
                v_held := v_held - private.sweep_expired_holds('organization', v_sub_id);
            end if;
            if v_bal - v_held < v_amounts[i] then
                if v_took[i] then
                    perform private.seat_cap_give_back(v_seat_ids[i], v_amounts[i], pg_catalog.now());
                end if;
                v_res[i] := private.credit_refusal('organization', 'insufficient_credits', v_bal - v_held);
            else
                v_bal := v_bal - v_amounts[i];
                v_id := v_new_ids[i];
                v_res[i] := row(true, 'organization', null, v_id, v_amounts[i], v_bal, false);
                w_ids := w_ids || v_id;
                w_idx := w_idx || i;
                w_bal := w_bal || v_bal;
            end if;
        end if;
    end loop;

    -- 5. One update of the pool row, one insert of every ledger row.
    if pg_catalog.cardinality(w_ids) > 0 then
        v_org_metadata := private.org_attribution_metadata(
            p_clerk_org_id, v_org_id, v_org_name, v_stripe_customer_id, v_sub_id, null, null
        );
        update public.organization_subscriptions as sub
        set credits_balance = v_bal
        where sub.id = v_sub_id;

        insert into public.credit_transactions (
            id, pool, kind, user_id, organization_id, organization_subscription_id, seat_id,
            amount, balance_after, description, idempotency_key, request_fingerprint,
            subscription_period_start, subscription_period_end, metadata
        )
        select
            w.id, 'organization', 'deduction', v_user_ids[w.wi], v_org_id, v_sub_id,
            v_seat_ids[w.wi], -v_amounts[w.wi], w.bal, v_descs[w.wi], v_keys[w.wi], v_fps[w.wi],
            v_start, v_end,
            -- the org's keys once (v_org_metadata), each row's own keys over them
            v_org_metadata || pg_catalog.jsonb_build_object(
                'seat_id', v_seat_ids[w.wi],
                'seat_role', v_seat_roles[w.wi],
                'clerk_user_id', v_users[w.wi],
                'context', v_contexts[w.wi]
            )
        from rows from (pg_catalog.unnest(w_ids), pg_catalog.unnest(w_idx), pg_catalog.unnest(w_bal)) as w (id, wi, bal)
        order by w.id;

        -- H3: each written element's exact before/after, in the applied order.
        if v_alerts then
            perform private.note_pool_debit(v_sub_id, w.bal + v_amounts[w.wi], w.bal)
            from rows from (pg_catalog.unnest(w_idx), pg_catalog.unnest(w_bal)) with ordinality as w (wi, bal, n)
            order by w.n;
        end if;
    end if;

    return query
    select r.ok, r.pool, r.reason, r.transaction_id, r.amount, r.balance, r.replayed
    from pg_catalog.unnest(v_res) with ordinality as r (ok, pool, reason, transaction_id, amount, balance, replayed, n)
    order by r.n;
end
$$;

revoke all on function public.deduct_credits_pooled_batch(text, jsonb)
from public, anon, authenticated, service_role;
grant execute on function public.deduct_credits_pooled_batch(text, jsonb) to service_role;

comment on function public.deduct_credits_pooled_batch(text, jsonb) is
'Many deductions from one org pool in one transaction: p_requests is an array of '
'{clerk_user_id, amount, description, idempotency_key?, context?}; one result row per '
'element, in order, with deduct_credits_pooled''s rules and reasons for each (seat_cap_reached '
'for an element past its seat''s cap, H2; held by holds excluded, H1; replay per '
'key and spender, the same fingerprint as a single call; insufficient_credits for the one '
'that would overdraw, with the balance at that point). The pool row is locked and updated '
'once; each success gets its own ledger row whose balance_after is the pool balance right '
'after it in the applied order. Bad input in any element: SQLSTATE 22023 naming it, '
'nothing written. Service role only.';

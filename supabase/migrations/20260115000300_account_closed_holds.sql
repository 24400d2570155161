-- L10, for holds: nothing a deleted user had approved spends after Clerk's
-- user.deleted.
--
-- Migration grant_binding_and_device_throttles refuses a personal deduction
-- by a user marked deleted (account_closed). Two paths still reached the
-- personal balance:
--   1. authorize_credits on the personal pool: an access token still inside
--      its hour reserved credits, and a capture then spent them;
--   2. a hold made before the event and captured after it.
-- Now authorize_credits refuses a personal hold for a deleted user with
-- account_closed (HTTP 403, nothing written), and user.deleted voids every
-- live hold of the user, personal and organization, in the same transaction
-- (held and the seat cap go back, exactly as a void_hold). A capture of
-- such a hold then gets capture_credits' refusal for a voided hold
-- (hold_voided), and nothing is spent.
--
-- authorize_credits is copied from migration bounded_holds_and_cap_periods
-- with one added check (marked L10); the re-baseline of issue 30 folds the
-- copy into one definition.

-- user.deleted voids the user's live holds ----------------------------------

create or replace function private.clerk_user_deleted(
    p_result public.clerk_event_result,
    p_event_at timestamptz
)
returns public.clerk_event_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_result public.clerk_event_result := p_result;
begin
    -- The row stays (the ledger points at it), marked deleted: a refresh or
    -- rotation for this user is refused from now on.
    insert into public.users as u (clerk_user_id)
    values (p_result.clerk_user_id)
    on conflict (clerk_user_id) do nothing;
    update public.users as u
    set deleted_at = coalesce(u.deleted_at, pg_catalog.now())
    where u.clerk_user_id = p_result.clerk_user_id
    returning u.id into v_result.user_id;
    update public.organization_seats as s
    set status = 'revoked',
        status_changed_at = coalesce(p_event_at, pg_catalog.now()),
        status_changed_by = 'clerk'
    where s.user_id = v_result.user_id and s.status <> 'revoked';
    get diagnostics v_result.seats_revoked = row_count;
    select c.extension_tokens, c.refresh_tokens
    into v_result.extension_tokens_revoked, v_result.refresh_tokens_revoked
    from private.revoke_user_credentials(p_result.clerk_user_id) as c;
    -- L10: every live hold goes back, as void_hold would (held, seat cap).
    perform public.void_hold(h.id, p_result.clerk_user_id)
    from public.credit_holds as h
    where h.user_id = v_result.user_id and h.state = 'held'
    order by h.id;
    return v_result;
end
$$;

revoke all on function private.clerk_user_deleted(public.clerk_event_result, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.clerk_user_deleted(public.clerk_event_result, timestamptz) is
'user.deleted: mark the user deleted, revoke every seat of the user (seats_revoked) and, in the same '
'transaction, every extension token and refresh-token family (L3) and void every live hold of '
'the user (L10). Called by apply_clerk_event only.';

-- authorize_credits: account_closed on the personal pool ----------------------

create or replace function public.authorize_credits(
    p_clerk_user_id text,
    p_amount numeric,
    p_description text,
    p_clerk_org_id text default null,
    p_idempotency_key text default null,
    p_context jsonb default '{}',
    p_ttl interval default null
)
returns public.hold_result
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_amount numeric(20, 4);
    v_context jsonb;
    v_ttl interval := coalesce(p_ttl, interval '5 minutes');
    v_fingerprint text;
    v_pool text := case when p_clerk_org_id is null then 'personal' else 'organization' end;
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
    v_counter record;  -- H5: the cap counter taken from (cap, period, period_start)
    v_cap_taken boolean := false;
    v_cap_period text;  -- H5: ... recorded on the hold
    v_cap_period_start timestamptz;
    v_pool_balance numeric;  -- H4: the org pool's balance (unlocked read)
    v_limits private.hold_limits;  -- H4
    v_live integer;  -- H4: the spender's live holds
    v_live_amount numeric;  -- H4: what they reserve
    v_most numeric;  -- H4: the largest hold allowed now
    v_existing record;
    v_available numeric;
    v_metadata jsonb;
    v_hold_id uuid := pg_catalog.gen_random_uuid();
    v_expires_at timestamptz;
begin
    v_amount := private.valid_credit_amount(p_amount);
    v_context := private.valid_credit_context(p_description, p_idempotency_key, p_context);
    if p_clerk_user_id is null then
        raise exception 'p_clerk_user_id must not be null' using errcode = '22023';
    elsif v_ttl <= interval '0' or v_ttl > interval '1 hour' then
        raise exception 'p_ttl must be greater than 0 and at most 1 hour (got %)', v_ttl
            using errcode = '22023';
    end if;
    v_expires_at := pg_catalog.now() + v_ttl;
    if p_idempotency_key is not null then
        v_fingerprint := private.credit_request_fingerprint(
            pg_catalog.jsonb_build_array(
                'authorize', p_clerk_user_id, p_clerk_org_id, v_amount, p_description, v_context,
                extract(epoch from v_ttl)
            )
        );
    end if;

    select
        u.id, o.id, o.name, o.stripe_customer_id, s.id, s.role, s.status,
        sub.id, sub.status, coalesce(s.spend_cap, o.default_seat_cap), sub.credits_balance
    into
        v_user_id, v_org_id, v_org_name, v_stripe_customer_id, v_seat_id, v_seat_role,
        v_seat_status, v_subscription_id, v_subscription_status, v_cap, v_pool_balance
    from (values (1)) as one (x)
    left join public.users as u
        on u.clerk_user_id = p_clerk_user_id
    left join public.organizations as o
        on o.clerk_org_id = p_clerk_org_id
    left join lateral (
        select s.id, s.role, s.status, s.spend_cap
        from public.organization_seats as s
        where s.organization_id = o.id and s.user_id = u.id
        limit 1
    ) as s on true
    left join lateral (
        select sub.id, sub.status, sub.credits_balance
        from public.organization_subscriptions as sub
        where sub.organization_id = o.id and sub.is_current
        limit 1
    ) as sub on true;

    if v_user_id is null then
        return private.hold_refusal(v_pool, 'unknown_user');
    elsif p_clerk_org_id is not null and v_org_id is null then
        return private.hold_refusal(v_pool, 'unknown_organization');
    end if;

    -- Idempotency (L7 namespace: spender and pool; holds have their own):
    -- the same key replays the same hold, whatever became of it since.
    if p_idempotency_key is not null then
        perform pg_catalog.pg_advisory_xact_lock(
            pg_catalog.hashtextextended(
                'credit_holds:' || v_pool || ':' || coalesce(v_org_id::text, '') || ':'
                || v_user_id::text || ':' || p_idempotency_key,
                0
            )
        );
        select h.id, h.amount, h.available_after, h.expires_at, h.request_fingerprint
        into v_existing
        from public.credit_holds as h
        where
            h.user_id = v_user_id
            and h.idempotency_key = p_idempotency_key
            and (
                (v_pool = 'organization' and h.pool = 'organization' and h.organization_id = v_org_id)
                or (v_pool = 'personal' and h.pool = 'personal')
            );
        if v_existing.id is not null then
            if v_existing.request_fingerprint <> v_fingerprint then
                raise exception 'p_idempotency_key was already used with different arguments'
                    using
                        errcode = '23505',
                        detail = pg_catalog.format('first used by credit hold %s', v_existing.id),
                        hint = 'Use a new idempotency key for a new request.';
            end if;
            return row(
                true, v_pool, null, v_existing.id, v_existing.amount, v_existing.available_after,
                v_existing.expires_at, true
            )::public.hold_result;
        end if;
    end if;

    if v_pool = 'personal' then
        -- L10: a user deleted in Clerk reserves nothing (a replay above still
        -- answers what was done before the event).
        if private.user_deleted(p_clerk_user_id) then
            return private.hold_refusal('personal', 'account_closed');
        end if;
        v_metadata := pg_catalog.jsonb_build_object(
            'pool', 'personal',
            'clerk_user_id', p_clerk_user_id,
            'context', v_context
        );
    else
        -- Never personal credits from here on (C2).
        if not private.seat_allows_spending(v_seat_status) then
            return private.hold_refusal('organization', 'no_active_seat');
        elsif v_subscription_id is null
            or not private.subscription_allows_spending(v_subscription_status)
        then
            return private.hold_refusal('organization', 'no_active_subscription');
        end if;

        -- The same attribution as a deduction's (capture copies it to the ledger).
        v_metadata := private.org_attribution_metadata(
            p_clerk_org_id, v_org_id, v_org_name, v_stripe_customer_id, v_subscription_id,
            v_seat_id, v_seat_role
        ) || pg_catalog.jsonb_build_object('clerk_user_id', p_clerk_user_id, 'context', v_context);
    end if;

    -- H4: the bounds, for every caller (see the header). Refusals write nothing.
    select * into v_limits from private.hold_limits;
    if not found then
        raise exception 'private.hold_limits has no row: holds are refused until it has one'
            using errcode = 'XX000';  -- fail closed
    elsif v_ttl > v_limits.max_ttl then
        return private.hold_refusal(v_pool, 'hold_ttl_too_long');
    end if;
    -- One spender's authorizes in turn (nothing else takes this lock; it
    -- comes before the seat cap and pool locks), so the count below is exact.
    perform pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('credit_holds:spender:' || coalesce(v_seat_id, v_user_id)::text, 0)
    );
    if v_pool = 'organization' then
        select count(*), coalesce(sum(h.amount), 0) into v_live, v_live_amount
        from public.credit_holds as h
        where h.seat_id = v_seat_id and h.state = 'held' and h.expires_at > pg_catalog.now();
    else
        select count(*), coalesce(sum(h.amount), 0) into v_live, v_live_amount
        from public.credit_holds as h
        where
            h.user_id = v_user_id and h.pool = 'personal' and h.state = 'held'
            and h.expires_at > pg_catalog.now();
    end if;
    if v_live >= v_limits.max_live_holds then
        return private.hold_refusal(v_pool, 'too_many_holds');
    end if;
    v_most := v_limits.max_hold_amount;
    if v_pool = 'organization'
        and v_limits.max_held_share < 1
        and exists (
            select from public.organization_seats as s
            where
                s.organization_id = v_org_id and s.id <> v_seat_id
                and private.seat_allows_spending(s.status)
        )
    then
        -- Others may spend this pool: one seat's live holds together reserve
        -- at most max_held_share of its balance.
        v_most := least(
            v_most,
            greatest(
                pg_catalog.trunc(v_limits.max_held_share * v_pool_balance, 4) - v_live_amount, 0
            )
        );
    end if;
    if v_amount > v_most then
        return private.hold_refusal(v_pool, 'hold_too_large', v_most);
    end if;

    if v_pool = 'organization' then
        -- Lock order: hold rows, seat cap, pool row (see the header). As a
        -- deduction, an uncapped seat pays for none of it (the cap came with
        -- the read above); its swept holds' pending caps wait for purge or
        -- for a cap (giving back to no cap is nothing).
        if v_cap is not null then
            perform private.give_back_pending_caps(v_seat_id);
            -- H5: the counter taken from is recorded on the hold.
            v_counter := private.seat_cap_counter(v_seat_id);
            if v_counter.cap is not null then
                if v_amount > v_counter.cap
                    or not private.seat_cap_count(
                        v_seat_id, v_counter.period, v_counter.period_start, v_amount,
                        v_counter.cap
                    )
                then
                    return private.hold_refusal('organization', 'seat_cap_reached');
                end if;
                v_cap_taken := true;
                v_cap_period := v_counter.period;
                v_cap_period_start := v_counter.period_start;
            end if;
        end if;
    end if;

    -- Reserve and record in one statement: the pool the request names gets
    -- held + amount when its available balance covers it, and the hold row is
    -- written from what that update returns (the pool row's lock, taken here
    -- and held to commit, covers nothing more). No row: the pool is short;
    -- if it has holds, its expired ones are swept and this is tried once more.
    for i in 1 .. 2 loop
        with reserved_org as (
            update public.organization_subscriptions as sub
            set held = sub.held + v_amount
            where
                v_pool = 'organization' and sub.id = v_subscription_id
                and sub.credits_balance - sub.held >= v_amount
            returning sub.credits_balance - sub.held as available
        ),

        reserved_personal as (
            update public.users as u
            set held = u.held + v_amount
            where
                v_pool = 'personal' and u.id = v_user_id
                and u.credits_balance - u.held >= v_amount
            returning u.credits_balance - u.held as available
        )

        insert into public.credit_holds (
            id, pool, user_id, organization_id, organization_subscription_id, seat_id, amount,
            available_after, expires_at, description, idempotency_key, request_fingerprint,
            metadata, cap_taken, cap_period, cap_period_start
        )
        select
            v_hold_id, v_pool::public.credit_pool, v_user_id, v_org_id, v_subscription_id,
            v_seat_id, v_amount, r.available, v_expires_at, p_description, p_idempotency_key,
            v_fingerprint, v_metadata, v_cap_taken, v_cap_period, v_cap_period_start
        from (
            select ro.available from reserved_org as ro
            union all
            select rp.available from reserved_personal as rp
        ) as r
        returning available_after into v_available;
        exit when v_available is not null or i = 2;
        exit when not exists (
            select from public.organization_subscriptions as sub
            where v_pool = 'organization' and sub.id = v_subscription_id and sub.held > 0
            union all
            select from public.users as u
            where v_pool = 'personal' and u.id = v_user_id and u.held > 0
        );
        exit when private.sweep_expired_holds(
            v_pool::public.credit_pool,
            case when v_pool = 'organization' then v_subscription_id else v_user_id end
        ) = 0;
    end loop;

    if v_available is null then
        if v_cap_taken then
            perform private.seat_cap_give_back_to(
                v_seat_id, v_cap_period, v_cap_period_start, v_amount
            );
        end if;
        select coalesce(
            (
                select sub.credits_balance - sub.held
                from public.organization_subscriptions as sub
                where v_pool = 'organization' and sub.id = v_subscription_id
            ),
            (
                select u.credits_balance - u.held
                from public.users as u
                where v_pool = 'personal' and u.id = v_user_id
            )
        ) into v_available;
        return private.hold_refusal(v_pool, 'insufficient_credits', v_available);
    end if;

    return row(
        true, v_pool, null, v_hold_id, v_amount, v_available, v_expires_at, false
    )::public.hold_result;
end
$$;

revoke all on function public.authorize_credits(text, numeric, text, text, text, jsonb, interval)
from public, anon, authenticated, service_role;
grant execute on function public.authorize_credits(text, numeric, text, text, text, jsonb, interval)
to service_role;

comment on function public.authorize_credits(text, numeric, text, text, text, jsonb, interval) is
'Reserve p_amount for a later capture (H1). Same pool choice, attribution, seat and subscription '
'checks as deduct_credits_pooled (org pool when p_clerk_org_id is given, never personal then); '
'the seat''s cap is taken (seat_cap_reached) and the counter recorded on the hold (H5). Bounded '
'by private.hold_limits (H4): hold_ttl_too_long (p_ttl above max_ttl), too_many_holds (the seat '
'or personal user has max_live_holds live holds), hold_too_large (above max_hold_amount, or on '
'a pool another active seat may spend, the seat''s live holds with this one above '
'max_held_share of the balance; available = the largest hold allowed now). Refused with '
'insufficient_credits when the pool''s available balance (credits_balance - held) is short, '
'after sweeping its expired holds once. p_ttl: default 5 minutes, 22023 outside 0 < p_ttl <= 1 '
'hour. A repeated p_idempotency_key (per spender and pool) with the same arguments returns the '
'same hold (replayed = true); with others: SQLSTATE 23505. A personal hold for a user deleted '
'in Clerk: account_closed (L10). Service role only.';

-- Holds are bounded, and a cap is given back to the period it was taken from
-- (issue 28; SECURITY.md H4, H5).
--
-- H4  One member could authorize the whole available balance of a pool for an
--     hour (everyone else: insufficient_credits) and void it at no cost, or
--     open holds without limit. authorize_credits now reads the bounds from
--     private.hold_limits (one row; in the database, so every client is
--     bounded: the issuer, PostgREST callers with the service role, psql, edge
--     functions) and refuses, writing nothing:
--       hold_ttl_too_long  p_ttl above max_ttl (default 15 minutes; the
--                          argument's hard range, 22023 outside 0 < ttl <= 1 h,
--                          is unchanged)
--       too_many_holds     the spender (an org seat, or a user's personal
--                          pool) already has max_live_holds live holds
--                          (default 8)
--       hold_too_large     above max_hold_amount (default none), or, on an
--                          org pool another active seat may spend, the
--                          spender's live holds with this one above
--                          max_held_share of the pool's balance (default half);
--                          available = the largest hold allowed now
--     The count is exact under concurrency: authorizes of one spender take a
--     transaction advisory lock on it before counting (taken by nothing else,
--     always before the seat cap and pool row locks: no cycle).
--
-- H5  A hold's cap was given back to the seat's CURRENT period kind: cap
--     10/day, hold 10, the admin switches to 20/month, a deduction of 8, a
--     capture for 0.0001 gave 9.9999 back to the month counter. A hold now
--     records the counter it took from (credit_holds.cap_period,
--     cap_period_start) and gives back only to that counter, whatever the cap
--     is now. If that period has ended, the new period's counter gets nothing
--     back (the old row is corrected; it no longer limits anything). A capture
--     whose seat now counts in another counter (the kind changed, a new period
--     began, or the hold took no cap) also counts the captured amount there:
--     that spend happened in the current period.
--
-- Lock order (unchanged, 20260114000000_credit_holds): hold row -> seat cap
-- rows -> pool row; two cap rows of one seat in (period, period_start) order.

-- H4: the bounds -------------------------------------------------------------

create table private.hold_limits (
    singleton boolean primary key default true check (singleton),
    max_live_holds integer not null default 8 check (max_live_holds > 0),
    max_hold_amount numeric(20, 4) check (max_hold_amount > 0),
    max_held_share numeric(5, 4) not null default 0.5
    check (max_held_share > 0 and max_held_share <= 1),
    max_ttl interval not null default '15 minutes'
    check (max_ttl > interval '0' and max_ttl <= interval '1 hour'),
    updated_at timestamptz not null default now()
);

insert into private.hold_limits default values;

revoke all on table private.hold_limits from public, anon, authenticated, service_role;

comment on table private.hold_limits is
'H4: the bounds authorize_credits applies to every hold (one row). max_live_holds: live holds '
'per spender (an org seat, or a user''s personal pool); max_hold_amount: the largest hold '
'(null = no absolute bound); max_held_share: on an org pool another active seat may spend, the '
'most of the pool''s balance one seat''s live holds may reserve together; max_ttl: the longest '
'lifetime. Change with update (database owner); docs/database.md gives the reasons.';

-- The spender's live holds (too_many_holds, hold_too_large): org holds by seat.
-- Personal holds use credit_holds_personal_live_idx (user_id, expires_at).
create index credit_holds_seat_live_idx
on public.credit_holds (seat_id, expires_at)
include (amount)
where state = 'held' and seat_id is not null;

-- H5: the counter a hold took from --------------------------------------------

alter table public.credit_holds
add column cap_period public.seat_cap_period,
add column cap_period_start timestamptz,
add constraint credit_holds_cap_counter
check ((cap_period is null) = (cap_period_start is null) and (cap_period is null or cap_taken));

comment on column public.credit_holds.cap_period is
'H5: the seat cap counter the authorize took from (with cap_period_start): void, expiry and a '
'capture for less give back to that counter only. Null: no cap taken, or a hold authorized '
'before 20260115000000 (given back by the old rule).';
comment on column public.credit_holds.cap_period_start is
'H5: start of the cap period the authorize took from (see cap_period).';

create function private.seat_cap_counter(
    p_seat_id uuid,
    out cap numeric,
    out period text,
    out period_start timestamptz
)
language plpgsql
stable
set search_path = ''
as $$
declare
    v_org_id uuid;
begin
    select
        s.organization_id,
        coalesce(s.spend_cap, o.default_seat_cap),
        coalesce(s.spend_cap_period, o.default_seat_cap_period)
    into v_org_id, cap, period
    from public.organization_seats as s
    inner join public.organizations as o on s.organization_id = o.id
    where s.id = p_seat_id;
    if cap is not null then
        period_start := private.seat_cap_period_start(period, v_org_id, pg_catalog.now());
    end if;
end
$$;

revoke all on function private.seat_cap_counter(uuid)
from public, anon, authenticated, service_role;

comment on function private.seat_cap_counter(uuid) is
'The seat''s cap now (its own, else the org default) and the counter it counts in (period kind '
'and start); all null when no cap applies.';

create function private.seat_cap_count(
    p_seat_id uuid,
    p_period text,
    p_period_start timestamptz,
    p_amount numeric,
    p_cap numeric
)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_taken boolean;
begin
    -- The counter's row, started from the ledger the first time (one index
    -- range on credit_transactions (seat_id, created_at), once per period).
    if not exists (
        select from public.seat_cap_spend as sp
        where sp.seat_id = p_seat_id and sp.period = p_period and sp.period_start = p_period_start
    ) then
        insert into public.seat_cap_spend (seat_id, period, period_start, spent)
        select p_seat_id, p_period, p_period_start, coalesce(sum(-t.amount), 0)
        from public.credit_transactions as t
        where t.seat_id = p_seat_id and t.created_at >= p_period_start and t.kind = 'deduction'
        on conflict (seat_id, period, period_start) do nothing;
    end if;

    -- The cap, re-checked under the row lock: a concurrent take of the same
    -- seat waits here and then re-evaluates the condition on the new value.
    update public.seat_cap_spend as sp
    set spent = sp.spent + p_amount,
        updated_at = pg_catalog.now()
    where
        sp.seat_id = p_seat_id and sp.period = p_period and sp.period_start = p_period_start
        and (p_cap is null or sp.spent + p_amount <= p_cap)
    returning true into v_taken;
    return coalesce(v_taken, false);
end
$$;

revoke all on function private.seat_cap_count(uuid, text, timestamptz, numeric, numeric)
from public, anon, authenticated, service_role;

comment on function private.seat_cap_count(uuid, text, timestamptz, numeric, numeric) is
'Adds p_amount to one counter of the seat (period kind and start) when it stays within p_cap '
'(null: always, forced); true when counted. The row lock is held to commit (H2).';

-- seat_cap_take: the same rule, now on the helpers above (one definition of
-- "count against the seat's counter").
create or replace function private.seat_cap_take(
    p_seat_id uuid, p_amount numeric, p_force boolean default false
)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_counter record;
begin
    v_counter := private.seat_cap_counter(p_seat_id);
    if v_counter.cap is null then
        return true;  -- no cap applies
    elsif p_amount > v_counter.cap and not p_force then
        return false;
    end if;
    return private.seat_cap_count(
        p_seat_id, v_counter.period, v_counter.period_start, p_amount,
        case when not p_force then v_counter.cap end
    );
end
$$;

create function private.seat_cap_give_back_to(
    p_seat_id uuid,
    p_period text,
    p_period_start timestamptz,
    p_amount numeric
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    if p_amount is null or p_amount <= 0 then
        return;
    end if;
    update public.seat_cap_spend as sp
    set spent = greatest(sp.spent - p_amount, 0),
        updated_at = pg_catalog.now()
    where sp.seat_id = p_seat_id and sp.period = p_period and sp.period_start = p_period_start;
end
$$;

revoke all on function private.seat_cap_give_back_to(uuid, text, timestamptz, numeric)
from public, anon, authenticated, service_role;

comment on function private.seat_cap_give_back_to(uuid, text, timestamptz, numeric) is
'H5: returns p_amount to the one counter it was taken from (period kind and start), whatever '
'the seat''s cap is now; an ended period''s counter is corrected and the current one gets '
'nothing. Never below 0.';

create function private.hold_cap_give_back(
    p_seat_id uuid,
    p_amount numeric,
    p_created_at timestamptz,
    p_period text,
    p_period_start timestamptz
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    if p_period is null then
        -- Taken before 20260115000000: the counter was not recorded (old rule).
        perform private.seat_cap_give_back(p_seat_id, p_amount, p_created_at);
    else
        perform private.seat_cap_give_back_to(p_seat_id, p_period, p_period_start, p_amount);
    end if;
end
$$;

revoke all on function private.hold_cap_give_back(uuid, numeric, timestamptz, text, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.hold_cap_give_back(uuid, numeric, timestamptz, text, timestamptz) is
'A hold that took from a cap gives p_amount back to the counter it recorded (H5), or for a hold '
'from before that record, by the old rule (seat_cap_give_back).';

-- give_back_pending_caps: to each swept hold's own counter (H5) ---------------

create or replace function private.give_back_pending_caps(p_seat_id uuid)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_hold record;
begin
    for v_hold in
        select h.id, h.amount, h.created_at, h.cap_period, h.cap_period_start
        from public.credit_holds as h
        where h.seat_id = p_seat_id and h.cap_pending
        order by h.cap_period, h.cap_period_start
        for update skip locked
    loop
        perform private.hold_cap_give_back(
            p_seat_id, v_hold.amount, v_hold.created_at, v_hold.cap_period, v_hold.cap_period_start
        );
        update public.credit_holds as h
        set cap_pending = false
        where h.id = v_hold.id;
    end loop;
end
$$;

-- lock_hold: with the hold's counter -----------------------------------------

-- The type gains two fields; lock_hold is recreated with it (capture, void).
alter type private.locked_hold
add attribute cap_period text,
add attribute cap_period_start timestamptz;

create or replace function private.lock_hold(p_hold_id uuid)
returns private.locked_hold
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_hold private.locked_hold;
begin
    -- As in 20260114000000_credit_holds (one probe by primary key, the owner's
    -- clerk id as a subquery), with the hold's cap counter (H5).
    select
        h.id, h.pool::text, h.user_id, h.organization_subscription_id, h.seat_id, h.amount,
        h.expires_at, h.state, h.created_at, h.transaction_id, h.cap_taken, h.metadata,
        (select u.clerk_user_id from public.users as u where u.id = h.user_id),
        h.cap_period::text, h.cap_period_start
    into v_hold
    from public.credit_holds as h
    where h.id = p_hold_id
    for update;
    return v_hold;
end
$$;

-- authorize_credits ----------------------------------------------------------

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
'same hold (replayed = true); with others: SQLSTATE 23505. Service role only.';

-- capture_credits: the cap settled by its counters (H5) --------------------------

create function private.settle_hold_cap(
    p_seat_id uuid,
    p_held numeric,
    p_captured numeric,
    p_cap_taken boolean,
    p_created_at timestamptz,
    p_period text,
    p_period_start timestamptz
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_now record;
    v_give_back boolean;
    v_take boolean;
begin
    if p_cap_taken and p_period is null then
        -- Taken before 20260115000000 (no counter recorded): the old rule.
        perform private.hold_cap_give_back(
            p_seat_id, p_held - p_captured, p_created_at, null, null
        );
        return;
    end if;
    -- A hold that took from a counter gives back what it does not capture, to
    -- that counter (H5; an ended period's counter is corrected, the current
    -- one gets nothing). When the seat now counts in another counter (no cap
    -- was taken, the kind changed, or a new period began), the capture is
    -- counted there too, forced: the work was authorized and done (as for a
    -- revoked seat); later requests see the spend.
    v_now := private.seat_cap_counter(p_seat_id);
    v_give_back := p_cap_taken and p_held > p_captured;
    v_take := v_now.cap is not null
        and not (
            p_cap_taken and v_now.period = p_period and v_now.period_start = p_period_start
        );
    -- Two counter rows of one seat: in (period, period_start) order.
    if v_take and (not v_give_back or (v_now.period, v_now.period_start) < (p_period, p_period_start))
    then
        perform private.seat_cap_count(p_seat_id, v_now.period, v_now.period_start, p_captured, null);
        v_take := false;
    end if;
    if v_give_back then
        perform private.seat_cap_give_back_to(p_seat_id, p_period, p_period_start, p_held - p_captured);
    end if;
    if v_take then
        perform private.seat_cap_count(p_seat_id, v_now.period, v_now.period_start, p_captured, null);
    end if;
end
$$;

revoke all on function private.settle_hold_cap(
    uuid, numeric, numeric, boolean, timestamptz, text, timestamptz
) from public, anon, authenticated, service_role;

comment on function private.settle_hold_cap(
    uuid, numeric, numeric, boolean, timestamptz, text, timestamptz
) is
'The seat cap side of a capture of p_captured from a hold of p_held (H2, H5): the counter the '
'hold took from (p_period, p_period_start) gets p_held - p_captured back; the seat''s counter '
'now, if it is another one, counts p_captured (forced).';

create or replace function public.capture_credits(
    p_hold_id uuid,
    p_clerk_user_id text,
    p_amount numeric,
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
    v_hold private.locked_hold;
    v_new_id uuid := private.uuid_v7();
    v_transaction_id uuid;
    v_balance numeric;
    v_replay record;
    v_alerts boolean;  -- H3: the pool has low-balance thresholds
    v_checked boolean := false;  -- the hold was read, locked and checked (second try)
    v_pool text;
    v_subscription_id uuid;
begin
    v_amount := private.valid_credit_amount(p_amount);
    v_context := private.valid_credit_context('capture', null, p_context);
    if p_hold_id is null then
        raise exception 'p_hold_id must not be null' using errcode = '22023';
    elsif p_clerk_user_id is null then
        raise exception 'p_clerk_user_id must not be null' using errcode = '22023';
    end if;
    -- One statement marks the hold, debits its pool and writes the ledger row.
    -- First try: only a hold that needs no seat cap work (it took none and the
    -- seat has no cap now, the common case) and that is live, the caller's
    -- and big enough; its conditions are the hold update's WHERE, so a
    -- concurrent void or sweep is seen under the row lock. Anything else (a
    -- refusal, a replay, a cap to settle) is read, locked and checked below
    -- and the statement runs a second time with its checks done (v_checked).
    -- Lock order, as everywhere (see the header): the hold row (marked, an
    -- init plan of the pool update, so it runs first), the seat cap (second
    -- try only), the pool row, held to commit for the debit and its ledger row.
    for v_try in 1 .. 2 loop
        with marked as (
            update public.credit_holds as h
            set
                state = 'captured',
                released_at = pg_catalog.now(),
                captured_amount = v_amount,
                transaction_id = v_new_id
            where
                -- By its primary key only: "released_at is null" is state =
                -- 'held' (credit_holds_released); a test of state would let the
                -- planner scan the partial index of live holds instead
                -- (sql/tests/38_holds_lookups.sql, docs/performance.md).
                h.id = p_hold_id
                and h.released_at is null
                and (
                    v_checked
                    or (
                        h.expires_at > pg_catalog.now()
                        and h.amount >= v_amount
                        and h.user_id = (
                            select u.id from public.users as u
                            where u.clerk_user_id = p_clerk_user_id
                        )
                        -- H2: no cap work. The seat's cap now is its own or
                        -- the org's default, as the deduction's lookup reads it
                        -- (unlocked, as there: a cap set while this runs
                        -- applies from the seat's next request).
                        and not h.cap_taken
                        and coalesce(
                            (
                                select s.spend_cap from public.organization_seats as s
                                where s.id = h.seat_id
                            ),
                            (
                                select o.default_seat_cap from public.organizations as o
                                where o.id = h.organization_id
                            )
                        ) is null
                    )
                )
            returning
                h.id, h.pool, h.user_id, h.organization_id, h.organization_subscription_id,
                h.seat_id, h.amount, h.description, h.metadata
        ),

        debited_org as (
            update public.organization_subscriptions as sub
            set
                credits_balance = sub.credits_balance - v_amount,
                held = sub.held - (select m.amount from marked as m)
            where sub.id = (
                select m.organization_subscription_id from marked as m
                where m.pool = 'organization'
            )
            returning
                sub.credits_balance, sub.current_period_start, sub.current_period_end,
                sub.low_balance_thresholds is not null as alerts
        ),

        debited_personal as (
            update public.users as u
            set
                credits_balance = u.credits_balance - v_amount,
                held = u.held - (select m.amount from marked as m)
            where u.id = (select m.user_id from marked as m where m.pool = 'personal')
            returning u.credits_balance
        ),

        debited as (
            select
                d.credits_balance, d.current_period_start, d.current_period_end, d.alerts
            from debited_org as d
            union all
            select d.credits_balance, null, null, false
            from debited_personal as d
        )

        insert into public.credit_transactions (
            id, pool, kind, user_id, organization_id, organization_subscription_id, seat_id,
            amount, balance_after, description, subscription_period_start,
            subscription_period_end, metadata
        )
        select
            v_new_id, m.pool, 'deduction', m.user_id, m.organization_id,
            m.organization_subscription_id, m.seat_id, -v_amount, d.credits_balance,
            m.description, d.current_period_start, d.current_period_end,
            m.metadata
            || pg_catalog.jsonb_build_object(
                'hold_id', m.id,
                'context', (m.metadata -> 'context') || v_context
            )
        from marked as m
        cross join debited as d
        returning
            id, balance_after, pool::text, organization_subscription_id,
            (select d.alerts from debited as d)
        into v_transaction_id, v_balance, v_pool, v_subscription_id, v_alerts;

        exit when v_transaction_id is not null;
        if v_checked then
            -- Locked and checked: the statement cannot miss it. Fail closed.
            raise exception 'capture_credits: hold % was not captured after its checks', p_hold_id
                using errcode = 'XX000';
        end if;

        -- The hold row, locked (lock order: hold, seat cap, pool).
        v_hold := private.lock_hold(p_hold_id);

        if v_hold.id is null then
            return private.credit_refusal(null, 'hold_not_found');
        elsif v_hold.clerk_user_id <> p_clerk_user_id then
            return private.credit_refusal(v_hold.pool, 'hold_not_yours');
        elsif v_hold.state = 'captured' then
            -- The same capture again (same user, amount and context: its
            -- ledger row says what they were) replays it; no fingerprint is
            -- stored, so a capture writes no more than it must.
            select t.amount, t.balance_after, t.metadata -> 'context' as context into v_replay
            from public.credit_transactions as t
            where t.id = v_hold.transaction_id;
            if -v_replay.amount = v_amount
                and v_replay.context = (v_hold.metadata -> 'context') || v_context
            then
                return row(
                    true, v_hold.pool, null, v_hold.transaction_id, -v_replay.amount,
                    v_replay.balance_after, true
                )::public.credit_result;
            end if;
            return private.credit_refusal(v_hold.pool, 'hold_already_captured');
        elsif v_hold.state = 'voided' then
            return private.credit_refusal(v_hold.pool, 'hold_voided');
        elsif v_hold.state = 'expired' or v_hold.expires_at <= pg_catalog.now() then
            return private.credit_refusal(v_hold.pool, 'hold_expired');
        elsif v_amount > v_hold.amount then
            return private.credit_refusal(v_hold.pool, 'amount_exceeds_hold');
        end if;

        -- A live hold is captured even if the seat was revoked or the
        -- subscription changed since authorize: the work was authorized and
        -- done; the hold is the promise. It debits the subscription it was
        -- taken from.
        if v_hold.pool = 'organization' then
            -- H2, H5: private.settle_hold_cap (the counter the hold took
            -- from gets back what is not captured; the seat's counter now, if
            -- another, counts the capture).
            perform private.settle_hold_cap(
                v_hold.seat_id, v_hold.amount, v_amount, v_hold.cap_taken, v_hold.created_at,
                v_hold.cap_period, v_hold.cap_period_start
            );
        end if;
        v_checked := true;
    end loop;

    -- As a deduction: the alert helper only for a pool with thresholds.
    if v_alerts then
        perform private.note_pool_debit(v_subscription_id, v_balance + v_amount, v_balance);
    end if;

    return row(
        true, v_pool, null, v_transaction_id, v_amount, v_balance, false
    )::public.credit_result;
end
$$;

-- void_hold ------------------------------------------------------------------

create or replace function public.void_hold(p_hold_id uuid, p_clerk_user_id text)
returns public.hold_result
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_hold private.locked_hold;
    v_available numeric;
begin
    if p_hold_id is null then
        raise exception 'p_hold_id must not be null' using errcode = '22023';
    elsif p_clerk_user_id is null then
        raise exception 'p_clerk_user_id must not be null' using errcode = '22023';
    end if;

    v_hold := private.lock_hold(p_hold_id);

    if v_hold.id is null then
        return private.hold_refusal(null, 'hold_not_found');
    elsif v_hold.clerk_user_id <> p_clerk_user_id then
        return private.hold_refusal(v_hold.pool, 'hold_not_yours');
    elsif v_hold.state = 'captured' then
        return private.hold_refusal(v_hold.pool, 'hold_already_captured');
    elsif v_hold.state = 'expired' then
        return private.hold_refusal(v_hold.pool, 'hold_expired');
    elsif v_hold.state = 'voided' then
        return row(
            true, v_hold.pool, null, v_hold.id, v_hold.amount, null, v_hold.expires_at, true
        )::public.hold_result;
    end if;

    -- Held (live or expired and not swept yet): release it all.
    if v_hold.pool = 'organization' then
        if v_hold.cap_taken then
            -- H5: to the counter it took from, whatever the seat's cap is now.
            perform private.hold_cap_give_back(
                v_hold.seat_id, v_hold.amount, v_hold.created_at, v_hold.cap_period,
                v_hold.cap_period_start
            );
        end if;
        update public.organization_subscriptions as sub
        set held = sub.held - v_hold.amount
        where sub.id = v_hold.organization_subscription_id
        returning sub.credits_balance - sub.held into v_available;
    else
        update public.users as u
        set held = u.held - v_hold.amount
        where u.id = v_hold.user_id
        returning u.credits_balance - u.held into v_available;
    end if;

    update public.credit_holds as h
    set state = 'voided', released_at = pg_catalog.now()
    where h.id = v_hold.id;

    return row(
        true, v_hold.pool, null, v_hold.id, v_hold.amount, v_available, v_hold.expires_at, false
    )::public.hold_result;
end
$$;

-- Holds: authorize -> capture / void (issue 20 item 1; SECURITY.md H1).
--
-- An AI completion's cost is known only when its stream ends. A hold
-- reserves an amount of a pool first (authorize_credits), then turns into one
-- ledger deduction of at most that amount (capture_credits) or is released
-- (void_hold, or its expiry).
--
-- held              users.held / organization_subscriptions.held: the sum of
--                   the pool's holds in state 'held' (live, or expired and not
--                   swept yet). available = credits_balance - held. Changed
--                   only under the pool row's lock, with credits_balance.
-- credit_holds      one row per hold; the ledger records captures only
-- hold_result       what authorize_credits and void_hold return
--
-- Expiry releases a hold LAZILY: no job is needed for correctness. When an
-- authorize or a deduction would be refused while held > 0, it sweeps that
-- pool's expired holds under the pool row lock (sweep_expired_holds) and
-- tries once more. purge_expired_holds is tidiness: it sweeps every pool,
-- returns swept holds' seat caps and deletes finished holds.
--
-- Lock order, the same in every function here (no cycle, no deadlock):
--   hold row (for update) -> seat cap row (seat_cap_take / give_back, in
--   20260112000000_seat_caps) -> pool row.
-- A sweep runs under a pool row lock, so it takes hold rows with
-- "for update skip locked" (it never waits for a hold) and leaves the seat
-- cap of what it swept to later (cap_pending): the next authorize by that
-- seat while it has a cap, or purge_expired_holds, gives it back. Until then
-- the seat's cap counts the expired hold as spent: late, never short (fail
-- closed).

-- held on the pool rows ------------------------------------------------------

alter table public.users
add column held numeric(20, 4) not null default 0,
add constraint users_held_within_balance
check (held >= 0 and held <= credits_balance);

comment on column public.users.held is
'Personal credits reserved by holds in state held (credit_holds): available = credits_balance - held. '
'Changed only by the hold RPCs and the sweep of expired holds.';

alter table public.organization_subscriptions
add column held numeric(20, 4) not null default 0,
add constraint organization_subscriptions_held_within_balance
check (held >= 0 and held <= credits_balance);

comment on column public.organization_subscriptions.held is
'Pool credits reserved by holds in state held (credit_holds): available = credits_balance - held. '
'Changed only by the hold RPCs and the sweep of expired holds.';

-- credit_holds ---------------------------------------------------------------

create table public.credit_holds (
    -- Random, not time-ordered (uuid_v7, the ledger's): the table stays small
    -- (purge_expired_holds), so index locality buys nothing and v7 costs a call.
    id uuid primary key default pg_catalog.gen_random_uuid(),
    created_at timestamptz not null default now(),
    pool public.credit_pool not null,
    user_id uuid not null references public.users (id),
    organization_id uuid,
    organization_subscription_id uuid,
    seat_id uuid references public.organization_seats (id),
    amount numeric(20, 4) not null check (amount > 0),
    available_after numeric(20, 4) not null,
    expires_at timestamptz not null,
    state text not null default 'held'
    check (state in ('held', 'captured', 'voided', 'expired')),
    released_at timestamptz,
    cap_taken boolean not null default false,
    cap_pending boolean not null default false,
    captured_amount numeric(20, 4),
    transaction_id uuid,
    description text not null,
    idempotency_key text,
    request_fingerprint text,
    metadata jsonb not null default '{}',
    constraint credit_holds_subscription_fkey
    foreign key (organization_subscription_id, organization_id)
    references public.organization_subscriptions (id, organization_id)
    match full,
    constraint credit_holds_pool_owner
    check ((pool = 'organization') = (organization_subscription_id is not null)),
    constraint credit_holds_captured
    check ((state = 'captured') = (transaction_id is not null)),
    -- Every way out of held sets released_at: capture's first try finds a
    -- live hold by "released_at is null" and its primary key.
    constraint credit_holds_released
    check ((state = 'held') = (released_at is null))
);

-- The sweep's lookups: a pool's holds still counted in held, past expiry.
create index credit_holds_org_live_idx
on public.credit_holds (organization_subscription_id, organization_id, expires_at)
where state = 'held';
create index credit_holds_personal_live_idx
on public.credit_holds (user_id, expires_at)
where state = 'held' and pool = 'personal';
create index credit_holds_cap_pending_idx
on public.credit_holds (seat_id)
where cap_pending;
-- No more: every index is written by each authorize and capture (WAL on the
-- hot path), and the table stays small (purge_expired_holds). The indexes
-- above lead with the foreign keys' columns (D5). transaction_id has no
-- foreign key: the ledger is append-only (a key would also turn the ledger's
-- truncate guard into another error and want an index of its own).

-- Idempotency keys of authorizations: per spender and pool (as deductions,
-- L7), in a namespace of their own (a hold key never replays a deduction).
create unique index credit_holds_org_idempotency_key
on public.credit_holds (organization_id, user_id, idempotency_key)
where pool = 'organization' and idempotency_key is not null;
create unique index credit_holds_personal_idempotency_key
on public.credit_holds (user_id, idempotency_key)
where pool = 'personal' and idempotency_key is not null;

alter table public.credit_holds enable row level security;

revoke all on table public.credit_holds from public, anon, authenticated, service_role;
grant select on table public.credit_holds to service_role;

comment on table public.credit_holds is
'Credit holds (authorize -> capture / void). state: held (counted in the pool''s held until '
'captured, voided or swept after expires_at), captured (transaction_id: the one ledger '
'deduction), voided, expired. Written only by the hold RPCs; service role reads.';
comment on column public.credit_holds.amount is 'The amount reserved.';
comment on column public.credit_holds.available_after is
'The pool''s available balance (credits_balance - held) right after the authorization.';
comment on column public.credit_holds.expires_at is
'After this instant the hold can no longer be captured; it still counts in held until swept.';
comment on column public.credit_holds.cap_taken is
'The authorize counted amount against the seat''s cap (the seat had one then). Only such a hold '
'gives back to the cap (capture for less, void, expiry); a hold taken while the seat had no cap '
'counts its capture against a cap set since.';
comment on column public.credit_holds.cap_pending is
'Swept under a pool lock; its seat cap is given back by the seat''s next capped authorize or by '
'purge_expired_holds.';
comment on column public.credit_holds.transaction_id is
'The capture''s ledger row (credit_transactions.id), set when state = captured.';
comment on column public.credit_holds.metadata is
'Attribution at authorize time (as a deduction''s), and context; copied into the capture''s '
'ledger row with hold_id added.';

-- hold_result ----------------------------------------------------------------

create type public.hold_result as (
    ok boolean,
    pool text,
    reason text,
    hold_id uuid,
    amount numeric,
    available numeric,
    expires_at timestamptz,
    replayed boolean
);

comment on type public.hold_result is
'Result of authorize_credits and void_hold. ok: the hold was made (authorize) or released (void). '
'pool: personal or organization. reason: why not (ok = false). hold_id: the hold. amount: held '
'(authorize) or released (void). available: the pool''s credits_balance - held after the call '
'(for insufficient_credits: the available balance that was too low). expires_at: when the hold '
'stops being capturable. replayed: an idempotent repeat that changed nothing.';

create function private.hold_refusal(p_pool text, p_reason text, p_available numeric default null)
returns public.hold_result
language plpgsql
immutable
set search_path = ''
as $$
begin
    -- plpgsql like private.credit_refusal (a sql function with a SET clause is
    -- planned again on every call).
    return row(false, p_pool, p_reason, null, null, p_available, null, false)::public.hold_result;
end
$$;

revoke all on function private.hold_refusal(text, text, numeric)
from public, anon, authenticated, service_role;

comment on function private.hold_refusal(text, text, numeric) is
'A refused hold_result: ok false, the pool, the reason and (insufficient_credits) the available balance.';

-- sweep_expired_holds --------------------------------------------------------

create function private.sweep_expired_holds(p_pool public.credit_pool, p_owner_id uuid)
returns numeric
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_released numeric;
begin
    -- The pool row first (lock order: a sweep runs under it), then the
    -- expired holds nobody else is working on (skip locked: never wait).
    if p_pool = 'organization' then
        perform
        from public.organization_subscriptions as sub
        where sub.id = p_owner_id
        for no key update;

        with gone as (
            update public.credit_holds as h
            set state = 'expired', released_at = pg_catalog.now(), cap_pending = h.cap_taken
            where h.id in (
                select x.id
                from public.credit_holds as x
                where
                    x.organization_subscription_id = p_owner_id
                    and x.state = 'held'
                    and x.expires_at <= pg_catalog.now()
                for update skip locked
            )
            returning h.amount
        )

        select coalesce(sum(g.amount), 0) into v_released from gone as g;

        if v_released > 0 then
            update public.organization_subscriptions as sub
            set held = sub.held - v_released
            where sub.id = p_owner_id;
        end if;
    else
        perform
        from public.users as u
        where u.id = p_owner_id
        for no key update;

        with gone as (
            update public.credit_holds as h
            set state = 'expired', released_at = pg_catalog.now()
            where h.id in (
                select x.id
                from public.credit_holds as x
                where
                    x.user_id = p_owner_id
                    and x.pool = 'personal'
                    and x.state = 'held'
                    and x.expires_at <= pg_catalog.now()
                for update skip locked
            )
            returning h.amount
        )

        select coalesce(sum(g.amount), 0) into v_released from gone as g;

        if v_released > 0 then
            update public.users as u
            set held = u.held - v_released
            where u.id = p_owner_id;
        end if;
    end if;
    return v_released;
end
$$;

revoke all on function private.sweep_expired_holds(public.credit_pool, uuid)
from public, anon, authenticated, service_role;

comment on function private.sweep_expired_holds(public.credit_pool, uuid) is
'Releases a pool''s expired holds (state expired, held lowered) under the pool row lock and '
'returns the amount released. p_owner_id: organization_subscriptions.id or users.id. Holds '
'locked by a capture or void in progress are skipped. Seat caps are left to cap_pending.';

create function private.give_back_pending_caps(p_seat_id uuid)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_hold record;
begin
    for v_hold in
        select h.id, h.amount, h.created_at
        from public.credit_holds as h
        where h.seat_id = p_seat_id and h.cap_pending
        for update skip locked
    loop
        perform private.seat_cap_give_back(p_seat_id, v_hold.amount, v_hold.created_at);
        update public.credit_holds as h
        set cap_pending = false
        where h.id = v_hold.id;
    end loop;
end
$$;

revoke all on function private.give_back_pending_caps(uuid)
from public, anon, authenticated, service_role;

comment on function private.give_back_pending_caps(uuid) is
'Returns to the seat''s cap the amounts of its swept holds (cap_pending). Takes hold rows, then '
'the seat cap: never called under a pool row lock.';

-- lock_hold ------------------------------------------------------------------

create type private.locked_hold as (
    id uuid,
    pool text,
    user_id uuid,
    organization_subscription_id uuid,
    seat_id uuid,
    amount numeric,
    expires_at timestamptz,
    state text,
    created_at timestamptz,
    transaction_id uuid,
    cap_taken boolean,
    metadata jsonb,
    clerk_user_id text
);

create function private.lock_hold(p_hold_id uuid)
returns private.locked_hold
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_hold private.locked_hold;
begin
    -- By its primary key only, and the owner's clerk id as a subquery (one
    -- probe): a join to users can be cached as a generic plan that walks
    -- users' primary key on every call (docs/performance.md, holds;
    -- sql/tests/38_holds_lookups.sql). plpgsql, as hold_refusal: a sql
    -- function with a SET clause is planned again on every call.
    select
        h.id, h.pool::text, h.user_id, h.organization_subscription_id, h.seat_id, h.amount,
        h.expires_at, h.state, h.created_at, h.transaction_id, h.cap_taken, h.metadata,
        (select u.clerk_user_id from public.users as u where u.id = h.user_id)
    into v_hold
    from public.credit_holds as h
    where h.id = p_hold_id
    for update;
    return v_hold;
end
$$;

revoke all on function private.lock_hold(uuid)
from public, anon, authenticated, service_role;

comment on function private.lock_hold(uuid) is
'The hold p_hold_id locked for update (lock order: hold, seat cap, pool), with its owner''s '
'clerk user id; all fields null when there is no such hold. For capture_credits and void_hold.';

-- authorize_credits ----------------------------------------------------------

create function public.authorize_credits(
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
        sub.id, sub.status, coalesce(s.spend_cap, o.default_seat_cap)
    into
        v_user_id, v_org_id, v_org_name, v_stripe_customer_id, v_seat_id, v_seat_role,
        v_seat_status, v_subscription_id, v_subscription_status, v_cap
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
        select sub.id, sub.status
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

        -- Lock order: hold rows, seat cap, pool row (see the header). As a
        -- deduction, an uncapped seat pays for none of it (the cap came with
        -- the read above); its swept holds' pending caps wait for purge or
        -- for a cap (giving back to no cap is nothing).
        if v_cap is not null then
            perform private.give_back_pending_caps(v_seat_id);
            if not private.seat_cap_take(v_seat_id, v_amount) then
                return private.hold_refusal('organization', 'seat_cap_reached');
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
            metadata, cap_taken
        )
        select
            v_hold_id, v_pool::public.credit_pool, v_user_id, v_org_id, v_subscription_id,
            v_seat_id, v_amount, r.available, v_expires_at, p_description, p_idempotency_key,
            v_fingerprint, v_metadata, v_cap is not null
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
        if v_cap is not null then
            perform private.seat_cap_give_back(v_seat_id, v_amount, pg_catalog.now());
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
'the seat''s cap is taken (seat_cap_reached). Refused with insufficient_credits when the pool''s '
'available balance (credits_balance - held) is short, after sweeping its expired holds once. '
'p_ttl: how long the hold may be captured, default 5 minutes, at most 1 hour (else 22023). A '
'repeated p_idempotency_key (per spender and pool) with the same arguments returns the same '
'hold (replayed = true); with others: SQLSTATE 23505. Service role only.';

-- capture_credits ------------------------------------------------------------

create function public.capture_credits(
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
            -- H2: a hold that took from the seat's cap gives back what it does
            -- not capture; one authorized while the seat had no cap took
            -- nothing, so it gives nothing back, and if the seat has a cap now
            -- its capture counts against it (forced: the work was authorized
            -- and done, as for a revoked seat; later requests see the spend).
            -- seat_cap_take decides whether a cap applies now (no cap: it
            -- counts nothing).
            if v_hold.cap_taken then
                if v_hold.amount > v_amount then
                    perform private.seat_cap_give_back(
                        v_hold.seat_id, v_hold.amount - v_amount, v_hold.created_at
                    );
                end if;
            else
                perform private.seat_cap_take(v_hold.seat_id, v_amount, true);
            end if;
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

revoke all on function public.capture_credits(uuid, text, numeric, jsonb)
from public, anon, authenticated, service_role;
grant execute on function public.capture_credits(uuid, text, numeric, jsonb) to service_role;

comment on function public.capture_credits(uuid, text, numeric, jsonb) is
'Turn a live hold into one ledger deduction of p_amount (at most the held amount; H1) and '
'release the rest. The ledger row carries the hold''s attribution plus hold_id, its context '
'merged with p_context. Succeeds even if the seat was revoked after authorize (the work was '
'authorized and done). Refusals, nothing written: hold_not_found, hold_not_yours, '
'hold_already_captured, hold_voided, hold_expired, amount_exceeds_hold. The same capture '
'repeated (same user, amount, context) after success replays its result (replayed = true). '
'Service role only.';

-- void_hold ------------------------------------------------------------------

create function public.void_hold(p_hold_id uuid, p_clerk_user_id text)
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
            perform private.seat_cap_give_back(v_hold.seat_id, v_hold.amount, v_hold.created_at);
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

revoke all on function public.void_hold(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.void_hold(uuid, text) to service_role;

comment on function public.void_hold(uuid, text) is
'Release a hold entirely (H1): held and the seat cap go back; nothing reaches the ledger. A '
'repeated void replays (ok, replayed = true, available null). Refusals: hold_not_found, '
'hold_not_yours, hold_already_captured, hold_expired (already released by a sweep). '
'Service role only.';

-- purge_expired_holds --------------------------------------------------------

create function public.purge_expired_holds(p_retention interval default '1 day')
returns integer
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_pool record;
    v_seat uuid;
    v_deleted integer;
begin
    if p_retention is null or p_retention < interval '0' then
        raise exception 'p_retention must be an interval of 0 or more' using errcode = '22023';
    end if;

    -- 1. Seat caps of holds swept earlier (hold rows, then seat caps: no pool lock held).
    for v_seat in
        select distinct h.seat_id from public.credit_holds as h where h.cap_pending
    loop
        perform private.give_back_pending_caps(v_seat);
    end loop;

    -- 2. Sweep every pool with expired live holds (their caps: the next purge).
    for v_pool in
        select distinct h.pool, coalesce(h.organization_subscription_id, h.user_id) as owner_id
        from public.credit_holds as h
        where h.state = 'held' and h.expires_at <= pg_catalog.now()
    loop
        perform private.sweep_expired_holds(v_pool.pool, v_pool.owner_id);
    end loop;

    -- 3. Forget finished holds older than the retention.
    delete from public.credit_holds as h
    where
        h.state <> 'held'
        and not h.cap_pending
        and h.released_at < pg_catalog.now() - p_retention;
    get diagnostics v_deleted = row_count;
    return v_deleted;
end
$$;

revoke all on function public.purge_expired_holds(interval)
from public, anon, authenticated, service_role;
grant execute on function public.purge_expired_holds(interval) to service_role;

comment on function public.purge_expired_holds(interval) is
'Tidiness, not correctness (expired holds release themselves lazily): returns the seat caps of '
'swept holds, sweeps every pool''s expired holds and deletes holds captured, voided or expired '
'more than p_retention ago (default 1 day; an authorize key can be reused after that). Returns '
'the number deleted. Service role only.';

-- credit_consistency_check: the ledger, and now held --------------------------

-- Redefined here (it reads credit_holds, which did not exist in
-- 20260101000200): the ledger check unchanged, plus held = the sum of the
-- pool's holds in state held (pool 'personal:held' / 'organization:held').
drop function public.credit_consistency_check();

create function public.credit_consistency_check()
returns table (pool text, owner_id uuid, balance numeric, ledger_sum numeric)
language sql
stable
security invoker
set search_path = ''
as $$
    select 'personal', u.id, u.credits_balance, coalesce(l.total, 0)
    from public.users as u
    left join (
        select t.user_id, sum(t.amount) as total
        from public.credit_transactions as t
        where t.pool = 'personal'
        group by t.user_id
    ) as l on u.id = l.user_id
    where u.credits_balance <> coalesce(l.total, 0)
    union all
    select 'organization', s.id, s.credits_balance, coalesce(l.total, 0)
    from public.organization_subscriptions as s
    left join (
        select t.organization_subscription_id, sum(t.amount) as total
        from public.credit_transactions as t
        where t.pool = 'organization'
        group by t.organization_subscription_id
    ) as l on s.id = l.organization_subscription_id
    where s.credits_balance <> coalesce(l.total, 0)
    union all
    select 'personal:held', u.id, u.held, coalesce(h.total, 0)
    from public.users as u
    left join (
        select x.user_id, sum(x.amount) as total
        from public.credit_holds as x
        where x.pool = 'personal' and x.state = 'held'
        group by x.user_id
    ) as h on u.id = h.user_id
    where u.held <> coalesce(h.total, 0)
    union all
    select 'organization:held', s.id, s.held, coalesce(h.total, 0)
    from public.organization_subscriptions as s
    left join (
        select x.organization_subscription_id, sum(x.amount) as total
        from public.credit_holds as x
        where x.pool = 'organization' and x.state = 'held'
        group by x.organization_subscription_id
    ) as h on s.id = h.organization_subscription_id
    where s.held <> coalesce(h.total, 0)
$$;

revoke all on function public.credit_consistency_check() from public, anon, authenticated, service_role;
grant execute on function public.credit_consistency_check() to service_role;

comment on function public.credit_consistency_check() is
'Every pool whose balance differs from the sum of its ledger rows (pool personal or '
'organization), and every pool whose held differs from the sum of its holds in state held '
'(pool personal:held or organization:held; balance = held, ledger_sum = the holds'' sum); '
'owner_id: users.id or organization_subscriptions.id. Empty when all is well. Reads the whole '
'ledger: an operations check, not a hot path. Service role only; security invoker.';

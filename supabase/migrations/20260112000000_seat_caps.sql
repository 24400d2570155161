-- Per-seat spending caps inside an org pool (issue 20 item 2, SECURITY.md H2).
--
-- organization_seats.spend_cap / spend_cap_period      a seat's own cap
-- organizations.default_seat_cap / default_seat_cap_period
--                                     the org's default for seats without one
-- seat_cap_spend                      what each capped seat spent per period
-- seat_cap_take() / seat_cap_give_back()  count / return an amount (the
--                                     deductions, authorize, capture, void)
-- set_seat_cap() / set_org_default_seat_cap()  owners/admins (RLS) and the
--                                     service role
-- seat_spend_vs_cap                   analysts: spend against cap per seat
--
-- The cap lives on the seat row and the org row, which every org deduction
-- already reads for attribution: an uncapped seat pays for no extra lookup.
-- A capped seat counts its spend in one row per (seat, period); the cap is
-- enforced by a conditional update of that row, so concurrent requests from
-- one seat serialize on its row lock and cannot both slip under the cap.
--
-- Periods are UTC days, UTC months, or the current subscription period
-- (current_period_start of the org's current subscription). A period's row
-- starts from the seat's ledger deductions since the period began (so a cap
-- set mid-period counts what was already spent), then moves only through
-- seat_cap_take and seat_cap_give_back. Refunds do not give cap room back.
--
-- Lock order: a caller takes the seat's spend row BEFORE the pool row
-- (deduct_credits_pooled, deduct_credits_pooled_batch, authorize); the
-- reverse order could deadlock with a deduction of the same seat.

create domain public.seat_cap_period as text
check (value in ('day', 'month', 'subscription'));

comment on domain public.seat_cap_period is
'Period of a seat cap: day or month (UTC), or subscription (the current billing period).';

alter table public.organization_seats
add column spend_cap numeric(20, 4) check (spend_cap >= 0),
add column spend_cap_period public.seat_cap_period,
add constraint organization_seats_spend_cap_with_period
check ((spend_cap is null) = (spend_cap_period is null));

comment on column public.organization_seats.spend_cap is
'Most this seat may spend of the org pool per spend_cap_period (H2); null = the org''s '
'default_seat_cap applies. Set with set_seat_cap.';
comment on column public.organization_seats.spend_cap_period is
'day, month (UTC) or subscription; set together with spend_cap.';

alter table public.organizations
add column default_seat_cap numeric(20, 4) check (default_seat_cap >= 0),
add column default_seat_cap_period public.seat_cap_period,
add constraint organizations_default_seat_cap_with_period
check ((default_seat_cap is null) = (default_seat_cap_period is null));

comment on column public.organizations.default_seat_cap is
'Cap of every seat of the org that has no spend_cap of its own (H2); null = none. '
'Set with set_org_default_seat_cap.';
comment on column public.organizations.default_seat_cap_period is
'day, month (UTC) or subscription; set together with default_seat_cap.';

-- seat_cap_spend -------------------------------------------------------------

create table public.seat_cap_spend (
    seat_id uuid not null references public.organization_seats (id),
    period public.seat_cap_period not null,
    period_start timestamptz not null,
    spent numeric(20, 4) not null default 0,
    updated_at timestamptz not null default now(),
    primary key (seat_id, period, period_start)
);

alter table public.seat_cap_spend enable row level security;

revoke all on table public.seat_cap_spend from public, anon, authenticated, service_role;
grant select on table public.seat_cap_spend to service_role;

comment on table public.seat_cap_spend is
'What a capped seat spent (and holds) in one cap period: one row per (seat, period kind, '
'period start), written only by seat_cap_take / seat_cap_give_back. Its row lock is what makes '
'a cap exact under concurrency (H2). Service role reads; nobody writes directly.';
comment on column public.seat_cap_spend.spent is
'Deductions and live holds of the seat in the period (a hold counts from authorize; void, '
'expiry and a capture for less give the difference back).';

-- Helpers ----------------------------------------------------------------------

create function private.seat_cap_period_start(
    p_period text,
    p_organization_id uuid,
    p_at timestamptz
)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
declare
    v_start timestamptz;
begin
    if p_period = 'day' then
        return pg_catalog.date_trunc('day', p_at, 'UTC');
    elsif p_period = 'month' then
        return pg_catalog.date_trunc('month', p_at, 'UTC');
    end if;
    -- subscription: the current subscription's period (its creation when
    -- Stripe gave no period); no current subscription: nothing to spend.
    select coalesce(sub.current_period_start, sub.created_at) into v_start
    from public.organization_subscriptions as sub
    where sub.organization_id = p_organization_id and sub.is_current;
    return coalesce(v_start, '-infinity'::timestamptz);
end
$$;

revoke all on function private.seat_cap_period_start(text, uuid, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.seat_cap_period_start(text, uuid, timestamptz) is
'Start of the cap period containing p_at: the UTC day or month, or the current subscription''s '
'current_period_start (subscription).';

create function private.seat_cap_take(p_seat_id uuid, p_amount numeric, p_force boolean default false)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_org_id uuid;
    v_cap numeric;
    v_period text;
    v_start timestamptz;
    v_taken boolean;
begin
    select
        s.organization_id,
        coalesce(s.spend_cap, o.default_seat_cap),
        coalesce(s.spend_cap_period, o.default_seat_cap_period)
    into v_org_id, v_cap, v_period
    from public.organization_seats as s
    inner join public.organizations as o on s.organization_id = o.id
    where s.id = p_seat_id;

    if v_cap is null then
        return true;  -- no cap applies
    elsif p_amount > v_cap and not p_force then
        return false;
    end if;

    v_start := private.seat_cap_period_start(v_period, v_org_id, pg_catalog.now());

    -- The period's row, started from the ledger the first time (one index
    -- range on credit_transactions (seat_id, created_at), once per period).
    if not exists (
        select from public.seat_cap_spend as sp
        where sp.seat_id = p_seat_id and sp.period = v_period and sp.period_start = v_start
    ) then
        insert into public.seat_cap_spend (seat_id, period, period_start, spent)
        select
            p_seat_id, v_period, v_start,
            coalesce(sum(-t.amount), 0)
        from public.credit_transactions as t
        where t.seat_id = p_seat_id and t.created_at >= v_start and t.kind = 'deduction'
        on conflict (seat_id, period, period_start) do nothing;
    end if;

    -- The cap, re-checked under the row lock: a concurrent take of the same
    -- seat waits here and then re-evaluates the condition on the new value.
    update public.seat_cap_spend as sp
    set spent = sp.spent + p_amount,
        updated_at = pg_catalog.now()
    where
        sp.seat_id = p_seat_id and sp.period = v_period and sp.period_start = v_start
        and (p_force or sp.spent + p_amount <= v_cap)
    returning true into v_taken;
    return coalesce(v_taken, false);
end
$$;

revoke all on function private.seat_cap_take(uuid, numeric, boolean)
from public, anon, authenticated, service_role;

comment on function private.seat_cap_take(uuid, numeric, boolean) is
'true: p_amount was counted against the seat''s spend in its current cap period (or no cap '
'applies: the seat''s own cap, else the org default); false: it would pass the cap (refuse with '
'seat_cap_reached). Exact under concurrency: a conditional update of the seat''s period row, '
'locked until commit. Call before locking the pool row; give the amount back '
'(seat_cap_give_back) if the debit then fails. p_force: count it even past the cap (a capture '
'of a hold that was authorized before the seat had a cap; always true then).';

create function private.seat_cap_give_back(
    p_seat_id uuid,
    p_amount numeric,
    p_taken_at timestamptz
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_org_id uuid;
    v_cap numeric;
    v_period text;
    v_start timestamptz;
begin
    select
        s.organization_id,
        coalesce(s.spend_cap, o.default_seat_cap),
        coalesce(s.spend_cap_period, o.default_seat_cap_period)
    into v_org_id, v_cap, v_period
    from public.organization_seats as s
    inner join public.organizations as o on s.organization_id = o.id
    where s.id = p_seat_id;

    if v_cap is null or p_amount is null or p_amount <= 0 then
        return;  -- no cap now: nothing counts
    end if;

    if v_period = 'subscription' then
        select max(sp.period_start) into v_start
        from public.seat_cap_spend as sp
        where
            sp.seat_id = p_seat_id and sp.period = 'subscription'
            and sp.period_start <= coalesce(p_taken_at, pg_catalog.now());
    else
        v_start := private.seat_cap_period_start(
            v_period, v_org_id, coalesce(p_taken_at, pg_catalog.now())
        );
    end if;

    update public.seat_cap_spend as sp
    set spent = greatest(sp.spent - p_amount, 0),
        updated_at = pg_catalog.now()
    where sp.seat_id = p_seat_id and sp.period = v_period and sp.period_start = v_start;
end
$$;

revoke all on function private.seat_cap_give_back(uuid, numeric, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.seat_cap_give_back(uuid, numeric, timestamptz) is
'Returns p_amount to the cap period it was taken in (p_taken_at): a void, an expired hold, a '
'capture for less, a debit refused after the take. Never below 0; nothing when no cap applies '
'now or that period has no row.';

-- Admin RPCs -------------------------------------------------------------------

create type public.seat_cap_result as (
    ok boolean,
    reason text,
    organization_id uuid,
    seat_id uuid,
    cap numeric,
    period text
);

comment on type public.seat_cap_result is
'Result of set_seat_cap and set_org_default_seat_cap. ok: the cap was stored. reason (ok = '
'false): not_an_admin (the caller is not an active owner/admin of that org, or no such seat/org '
'is visible to them), unknown_seat, unknown_organization (service role). cap/period: as stored '
'(null = none).';

create function private.valid_seat_cap(p_cap numeric, p_period text)
returns numeric
language plpgsql
immutable
set search_path = ''
as $$
begin
    if p_cap is null then
        return null;
    elsif p_cap = 'NaN'::numeric or p_cap in ('Infinity'::numeric, '-Infinity'::numeric) then
        raise exception 'p_cap must be a finite number' using errcode = '22023';
    elsif p_cap < 0 then
        raise exception 'p_cap must not be negative (got %)', p_cap using errcode = '22023';
    elsif p_cap > 1000000000000 then
        raise exception 'p_cap must not exceed 1000000000000 (got %)', p_cap using errcode = '22023';
    elsif p_cap <> pg_catalog.round(p_cap, 4) then
        raise exception 'p_cap must have at most 4 decimal places (got %)', p_cap
            using errcode = '22023';
    elsif p_period is null or p_period not in ('day', 'month', 'subscription') then
        raise exception 'p_period must be one of day, month, subscription' using errcode = '22023';
    end if;
    return p_cap;
end
$$;

revoke all on function private.valid_seat_cap(numeric, text)
from public, anon, authenticated, service_role;

comment on function private.valid_seat_cap(numeric, text) is
'p_cap, or SQLSTATE 22023 naming the argument: p_cap NaN, infinite, negative, above 1e12, more '
'than 4 decimals; p_period not day, month or subscription (when p_cap is given).';

create function private.is_org_admin(p_clerk_user_id text, p_organization_id uuid)
returns boolean
language sql
stable
set search_path = ''
as $$
    select exists (
        select
        from public.organization_seats as s
        inner join public.users as u on s.user_id = u.id
        where
            u.clerk_user_id = p_clerk_user_id
            and s.organization_id = p_organization_id
            and private.seat_allows_spending(s.status)
            and s.role in ('owner', 'admin')
    )
$$;

revoke all on function private.is_org_admin(text, uuid)
from public, anon, authenticated, service_role;

comment on function private.is_org_admin(text, uuid) is
'The Clerk user holds an active owner or admin seat in the org (the rule of '
'admin_organization_ids, for a named user).';

-- p_actor: the Clerk user acting (checked: an active owner/admin of the
-- seat's org), or null for the service role acting for itself.
create function private.store_seat_cap(
    p_actor text,
    p_seat_id uuid,
    p_cap numeric default null,
    p_period text default null
)
returns public.seat_cap_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_cap numeric := private.valid_seat_cap(p_cap, p_period);
    v_org_id uuid;
begin
    if p_seat_id is null then
        raise exception 'p_seat_id must not be null' using errcode = '22023';
    end if;

    select s.organization_id into v_org_id
    from public.organization_seats as s
    where s.id = p_seat_id;

    if p_actor is null then
        if v_org_id is null then
            return row(false, 'unknown_seat', null, p_seat_id, null, null)::public.seat_cap_result;
        end if;
    elsif v_org_id is null or not private.is_org_admin(p_actor, v_org_id) then
        -- The same answer whether the seat exists or not: no probing of
        -- other orgs' seats.
        return row(false, 'not_an_admin', null, p_seat_id, null, null)::public.seat_cap_result;
    end if;

    update public.organization_seats as s
    set spend_cap = v_cap,
        spend_cap_period = case when v_cap is not null then p_period end
    where s.id = p_seat_id;

    return row(
        true, null, v_org_id, p_seat_id, v_cap, case when v_cap is not null then p_period end
    )::public.seat_cap_result;
end
$$;

revoke all on function private.store_seat_cap(text, uuid, numeric, text)
from public, anon, authenticated, service_role;

create function private.store_org_default_seat_cap(
    p_actor text,
    p_organization_id uuid,
    p_cap numeric default null,
    p_period text default null
)
returns public.seat_cap_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_cap numeric := private.valid_seat_cap(p_cap, p_period);
begin
    if p_organization_id is null then
        raise exception 'p_organization_id must not be null' using errcode = '22023';
    end if;

    if p_actor is null then
        if not exists (select from public.organizations as o where o.id = p_organization_id) then
            return row(
                false, 'unknown_organization', p_organization_id, null, null, null
            )::public.seat_cap_result;
        end if;
    elsif not private.is_org_admin(p_actor, p_organization_id) then
        return row(
            false, 'not_an_admin', p_organization_id, null, null, null
        )::public.seat_cap_result;
    end if;

    update public.organizations as o
    set default_seat_cap = v_cap,
        default_seat_cap_period = case when v_cap is not null then p_period end
    where o.id = p_organization_id;

    return row(
        true, null, p_organization_id, null, v_cap, case when v_cap is not null then p_period end
    )::public.seat_cap_result;
end
$$;

revoke all on function private.store_org_default_seat_cap(text, uuid, numeric, text)
from public, anon, authenticated, service_role;

create function private.set_seat_cap_checked(p_seat_id uuid, p_cap numeric, p_period text)
returns public.seat_cap_result
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    -- A signed-in user acts as themselves (auth.jwt() ->> 'sub', a Clerk id);
    -- a session without one acts as nobody and is refused (fail closed).
    return private.store_seat_cap(
        coalesce((select auth.jwt()) ->> 'sub', ''),
        p_seat_id, p_cap, p_period
    );
end
$$;

revoke all on function private.set_seat_cap_checked(uuid, numeric, text)
from public, anon, authenticated, service_role;
grant execute on function private.set_seat_cap_checked(uuid, numeric, text) to authenticated;

comment on function private.set_seat_cap_checked(uuid, numeric, text) is
'Body of public.set_seat_cap for signed-in callers (security definer: it writes rows no API '
'role may write; it checks the caller itself). In schema private: not exposed over the API.';

-- The API: security invoker (Supabase's linter, splinter 0029: no security
-- definer function in an exposed schema is executable by authenticated); the
-- checked body is private.set_seat_cap_checked.
create function public.set_seat_cap(p_seat_id uuid, p_cap numeric, p_period text)
returns public.seat_cap_result
language plpgsql
volatile
security invoker
set search_path = ''
as $$
begin
    -- The service role acts for itself through the _as variant (service role
    -- only); everyone else through the checked private body.
    if pg_catalog.current_setting('role', true) = 'service_role' then
        return public.set_seat_cap_as(null, p_seat_id, p_cap, p_period);
    end if;
    return private.set_seat_cap_checked(p_seat_id, p_cap, p_period);
end
$$;

revoke all on function public.set_seat_cap(uuid, numeric, text)
from public, anon, authenticated, service_role;
grant execute on function public.set_seat_cap(uuid, numeric, text) to authenticated, service_role;

comment on function public.set_seat_cap(uuid, numeric, text) is
'Set (or with p_cap null clear) a seat''s own spending cap per p_period (day, month, '
'subscription). Signed-in callers (auth.jwt() ->> ''sub''): only active owners/admins of the '
'seat''s org, else not_an_admin (also for a seat that does not exist). Service role: any seat '
'(unknown_seat). Bad input: 22023 naming the argument (H2).';

create function private.set_org_default_seat_cap_checked(
    p_organization_id uuid,
    p_cap numeric default null,
    p_period text default null
)
returns public.seat_cap_result
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    return private.store_org_default_seat_cap(
        coalesce((select auth.jwt()) ->> 'sub', ''),
        p_organization_id, p_cap, p_period
    );
end
$$;

revoke all on function private.set_org_default_seat_cap_checked(uuid, numeric, text)
from public, anon, authenticated, service_role;
grant execute on function private.set_org_default_seat_cap_checked(uuid, numeric, text)
to authenticated;

comment on function private.set_org_default_seat_cap_checked(uuid, numeric, text) is
'Body of public.set_org_default_seat_cap for signed-in callers (security definer, checked as '
'set_seat_cap_checked).';

-- The API: security invoker (Supabase's linter, splinter 0029: no security
-- definer function in an exposed schema is executable by authenticated); the
-- checked body is private.set_org_default_seat_cap_checked.
create function public.set_org_default_seat_cap(
    p_organization_id uuid,
    p_cap numeric default null,
    p_period text default null
)
returns public.seat_cap_result
language plpgsql
volatile
security invoker
set search_path = ''
as $$
begin
    if pg_catalog.current_setting('role', true) = 'service_role' then
        return public.set_org_default_seat_cap_as(null, p_organization_id, p_cap, p_period);
    end if;
    return private.set_org_default_seat_cap_checked(p_organization_id, p_cap, p_period);
end
$$;

revoke all on function public.set_org_default_seat_cap(uuid, numeric, text)
from public, anon, authenticated, service_role;
grant execute on function public.set_org_default_seat_cap(uuid, numeric, text)
to authenticated, service_role;

comment on function public.set_org_default_seat_cap(uuid, numeric, text) is
'Set (or with p_cap null clear) the cap of every seat of the org that has no cap of its own. '
'Same callers and refusals as set_seat_cap (unknown_organization for the service role) (H2).';

-- For the issuer's page (service role, acting for a signed-in Clerk user the
-- issuer verified): the same checks, with the user named; null = the service
-- acting for itself.

create function public.set_seat_cap_as(
    p_clerk_user_id text,
    p_seat_id uuid,
    p_cap numeric default null,
    p_period text default null
)
returns public.seat_cap_result
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    if p_clerk_user_id = '' then
        raise exception 'p_clerk_user_id must not be empty (null: the service itself)'
            using errcode = '22023';
    end if;
    return private.store_seat_cap(p_clerk_user_id, p_seat_id, p_cap, p_period);
end
$$;

revoke all on function public.set_seat_cap_as(text, uuid, numeric, text)
from public, anon, authenticated, service_role;
grant execute on function public.set_seat_cap_as(text, uuid, numeric, text) to service_role;

comment on function public.set_seat_cap_as(text, uuid, numeric, text) is
'set_seat_cap on behalf of p_clerk_user_id (verified by the issuer): refused with not_an_admin '
'unless they hold an active owner/admin seat in the seat''s org; null = the service itself (any '
'seat, unknown_seat). Service role only (H2).';

create function public.set_org_default_seat_cap_as(
    p_clerk_user_id text,
    p_organization_id uuid,
    p_cap numeric default null,
    p_period text default null
)
returns public.seat_cap_result
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    if p_clerk_user_id = '' then
        raise exception 'p_clerk_user_id must not be empty (null: the service itself)'
            using errcode = '22023';
    end if;
    return private.store_org_default_seat_cap(p_clerk_user_id, p_organization_id, p_cap, p_period);
end
$$;

revoke all on function public.set_org_default_seat_cap_as(text, uuid, numeric, text)
from public, anon, authenticated, service_role;
grant execute on function public.set_org_default_seat_cap_as(text, uuid, numeric, text)
to service_role;

comment on function public.set_org_default_seat_cap_as(text, uuid, numeric, text) is
'set_org_default_seat_cap on behalf of p_clerk_user_id, with the same owner/admin check; null = '
'the service itself. Service role only (H2).';

-- seat_spend_vs_cap ------------------------------------------------------------

create view public.seat_spend_vs_cap
with (security_invoker = true)
as
with seats as (
    select
        s.organization_id,
        o.clerk_org_id,
        o.name as organization_name,
        s.id as seat_id,
        s.user_id,
        u.clerk_user_id,
        u.email,
        s.role as seat_role,
        s.status as seat_status,
        coalesce(s.spend_cap, o.default_seat_cap) as cap,
        coalesce(s.spend_cap_period, o.default_seat_cap_period)::text as period,
        case
            when s.spend_cap is not null then 'seat'
            when o.default_seat_cap is not null then 'organization'
        end as cap_source
    from public.organization_seats as s
    inner join public.organizations as o on s.organization_id = o.id
    inner join public.users as u on s.user_id = u.id
),

periods as (
    select
        seats.*,
        case
            when seats.period = 'day' then pg_catalog.date_trunc('day', pg_catalog.now(), 'UTC')
            when seats.period = 'subscription'
                then coalesce(sub.current_period_start, sub.created_at)
            else pg_catalog.date_trunc('month', pg_catalog.now(), 'UTC')
        end as period_start
    from seats
    left join public.organization_subscriptions as sub
        on seats.organization_id = sub.organization_id and sub.is_current
),

spend as (
    select
        p.*,
        coalesce(
            sp.spent,
            (
                select coalesce(sum(-t.amount), 0)
                from public.credit_transactions as t
                where
                    t.seat_id = p.seat_id
                    and t.kind = 'deduction'
                    and t.created_at >= p.period_start
            )
        ) as spent
    from periods as p
    left join public.seat_cap_spend as sp
        on
            p.seat_id = sp.seat_id
            and p.period = sp.period::text
            and p.period_start = sp.period_start
)

select
    organization_id,
    clerk_org_id,
    organization_name,
    seat_id,
    user_id,
    clerk_user_id,
    email,
    seat_role,
    seat_status,
    cap,
    period,
    cap_source,
    period_start,
    spent,
    cap - spent as remaining
from spend;

revoke all on table public.seat_spend_vs_cap from public, anon, authenticated, service_role;
grant select on table public.seat_spend_vs_cap to service_role;

comment on view public.seat_spend_vs_cap is
'Every seat with its cap (own or the org default; cap_source seat / organization / null), the '
'current cap period and what the seat spent in it (for a capped seat: its counter, live holds '
'included; for an uncapped seat: ledger deductions of the current UTC month), and remaining = '
'cap - spent. Service role only (H2).';

-- The caps page ------------------------------------------------------------------

create function public.seat_caps_overview(p_clerk_user_id text)
returns table (
    organization_id uuid,
    clerk_org_id text,
    organization_name text,
    default_cap numeric,
    default_period text,
    seat_id uuid,
    clerk_user_id text,
    email text,
    seat_role text,
    seat_status text,
    own_cap numeric,
    own_period text,
    cap numeric,
    period text,
    cap_source text,
    period_start timestamptz,
    spent numeric,
    remaining numeric
)
language sql
stable
security definer
set search_path = ''
as $$
    -- One row per seat of every org where the caller is an active owner or
    -- admin, the org's columns repeated on each of its seats (the one result
    -- convention: rows, not nested jsonb). The page groups them by org.
    select
        o.id,
        o.clerk_org_id,
        o.name,
        o.default_seat_cap,
        o.default_seat_cap_period::text,
        v.seat_id,
        v.clerk_user_id,
        v.email,
        v.seat_role,
        v.seat_status::text,
        s2.spend_cap,
        s2.spend_cap_period::text,
        v.cap,
        v.period,
        v.cap_source,
        v.period_start,
        v.spent,
        v.remaining
    from public.organizations as o
    inner join public.organization_seats as s on o.id = s.organization_id
    inner join public.users as u on s.user_id = u.id
    inner join public.seat_spend_vs_cap as v on o.id = v.organization_id
    inner join public.organization_seats as s2 on v.seat_id = s2.id
    where
        u.clerk_user_id = p_clerk_user_id
        and private.seat_allows_spending(s.status)
        and s.role in ('owner', 'admin')
    order by o.name, o.clerk_org_id, v.email, v.clerk_user_id, v.seat_id
$$;

revoke all on function public.seat_caps_overview(text) from public, anon, authenticated, service_role;
grant execute on function public.seat_caps_overview(text) to service_role;

comment on function public.seat_caps_overview(text) is
'For the issuer''s /dashboard/caps page: one row per seat of every org where p_clerk_user_id '
'is an active owner/admin, with the org''s columns (organization_id, clerk_org_id, '
'organization_name, default_cap, default_period) and the seat''s (seat_id, clerk_user_id, '
'email, seat_role, seat_status, own_cap, own_period, cap, period, cap_source, period_start, '
'spent, remaining: seat_spend_vs_cap), ordered by organization name, then email. No rows for '
'anyone else. Service role only; security definer: it reads the '
'spend counters and checks the admin rule itself (H2).';

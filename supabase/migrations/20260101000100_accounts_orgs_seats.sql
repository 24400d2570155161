-- Accounts, organizations and seats.
--
-- users               one row per Clerk user; holds the personal credit balance
-- organizations       one row per Clerk organization
-- organization_seats  a user's seat in an organization; only an active seat
--                     lets its holder spend the organization's pooled credits
--
-- The service role (the issuer, the Clerk webhook sync) creates and updates
-- these rows through column-level grants that leave out every balance:
-- balances change only through the credit RPCs of later migrations.
-- Signed-in users read through RLS (policies: 20260101000600_rls_policies).

-- Helper: updated_at ---------------------------------------------------------

create function private.set_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    new.updated_at := pg_catalog.now();
    return new;
end
$$;

revoke all on function private.set_updated_at() from public;

comment on function private.set_updated_at() is
'Trigger: sets updated_at to now() on every update of a profile column.';

-- users ----------------------------------------------------------------------

create table public.users (
    id uuid primary key default gen_random_uuid(),
    clerk_user_id text not null unique check (clerk_user_id <> ''),
    email text,
    credits_balance numeric(20, 4) not null default 0
    check (credits_balance >= 0),
    deleted_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- updated_at tracks the profile columns only: a balance change is recorded
-- in the ledger, and the deduction path pays for no trigger. A migration that
-- adds a profile column adds it to this list.
create trigger users_set_updated_at
before update of clerk_user_id, email on public.users
for each row
execute function private.set_updated_at();

alter table public.users enable row level security;

revoke all on table public.users from public, anon, authenticated, service_role;
grant select on table public.users to authenticated, service_role;
grant insert (clerk_user_id, email) on table public.users to service_role;
grant update (email) on table public.users to service_role;

comment on table public.users is
'One row per Clerk user. Holds the personal credit balance (credits_balance), '
'which changes only through grant_credits, deduct_credits_pooled and refund_credits.';
comment on column public.users.clerk_user_id is
'Clerk user id (user_...), the sub claim of Clerk session tokens and of our tokens. Not a uuid.';
comment on column public.users.credits_balance is
'Personal credits. Never negative; equals the sum of the user''s personal-pool ledger rows '
'(credit_consistency_check).';
comment on column public.users.deleted_at is
'When Clerk reported the user deleted (user.deleted, apply_clerk_event). The row stays for the '
'ledger; token refresh and rotation refuse a deleted user (L3).';
comment on column public.users.updated_at is
'Last change of a profile column (balance changes are in credit_transactions).';

-- organizations --------------------------------------------------------------

create table public.organizations (
    id uuid primary key default gen_random_uuid(),
    clerk_org_id text not null unique check (clerk_org_id <> ''),
    name text not null check (name <> ''),
    stripe_customer_id text unique,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create trigger organizations_set_updated_at
before update on public.organizations
for each row
execute function private.set_updated_at();

alter table public.organizations enable row level security;

revoke all on table public.organizations from public, anon, authenticated, service_role;
grant select on table public.organizations to authenticated, service_role;
grant insert (clerk_org_id, name, stripe_customer_id) on table public.organizations
to service_role;
grant update (name, stripe_customer_id) on table public.organizations to service_role;

comment on table public.organizations is
'One row per Clerk organization. Its pooled credits live on its current subscription '
'(organization_subscriptions).';
comment on column public.organizations.clerk_org_id is
'Clerk organization id (org_...).';
comment on column public.organizations.stripe_customer_id is
'Stripe customer (cus_...) that pays for the organization; copied into every org-pool ledger row.';

-- organization_seats ---------------------------------------------------------

-- A domain, like public.subscription_status: checked when a value is written
-- to the column, not re-read on every update of the row.
create domain public.seat_status as text
check (value in ('active', 'pending', 'suspended', 'revoked'));

comment on domain public.seat_status is
'Seat status: active, pending, suspended, revoked. Which of them may spend: '
'private.seat_allows_spending.';

-- Which seat statuses may spend ----------------------------------------------

create function private.seat_allows_spending(p_status text)
returns boolean
language plpgsql
immutable
set search_path = ''
as $$
begin
    -- plpgsql, like private.subscription_allows_spending: a sql function
    -- with a SET clause is planned again in every transaction (Postgres 15).
    return coalesce(p_status = 'active', false);
end
$$;

revoke all on function private.seat_allows_spending(text)
from public, anon, authenticated, service_role;

comment on function private.seat_allows_spending(text) is
'The one place that says which seat statuses may use the org pool (spend, carry the org in a '
'token, be picked): active. pending, suspended, revoked and no seat (null) may not.';

create table public.organization_seats (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references public.organizations (id),
    user_id uuid not null references public.users (id),
    role text not null default 'member'
    check (role in ('owner', 'admin', 'member')),
    status public.seat_status not null default 'pending',
    status_changed_at timestamptz not null default now(),
    status_changed_by text not null default 'manual'
    check (status_changed_by in ('clerk', 'manual')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint organization_seats_one_per_user unique (organization_id, user_id)
);

-- organization_id is covered by the unique constraint (leading column).
create index organization_seats_user_id_idx on public.organization_seats (user_id);

create trigger organization_seats_set_updated_at
before update on public.organization_seats
for each row
execute function private.set_updated_at();

-- Every status change is stamped (SECURITY.md L1): who moved it (clerk = the
-- webhook sync, manual = set_seat_status or any other service-role write) and
-- when. apply_clerk_event sets both columns itself (the event's own time);
-- any other write that changes the status without changing them is manual,
-- now. The service role holds no privilege on these columns, so it cannot
-- forge a Clerk stamp.
create function private.stamp_seat_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if tg_op = 'INSERT' then
        if new.status_changed_by is distinct from 'clerk' then
            new.status_changed_by := 'manual';
            new.status_changed_at := pg_catalog.now();
        end if;
    elsif new.status is distinct from old.status
        and new.status_changed_by is not distinct from old.status_changed_by
        and new.status_changed_at is not distinct from old.status_changed_at then
        new.status_changed_by := 'manual';
        new.status_changed_at := pg_catalog.now();
    end if;
    return new;
end
$$;

revoke all on function private.stamp_seat_status() from public;

comment on function private.stamp_seat_status() is
'Trigger: a seat status change not stamped by apply_clerk_event is a manual change, now (L1).';

create trigger organization_seats_stamp_status
before insert or update on public.organization_seats
for each row
execute function private.stamp_seat_status();

alter table public.organization_seats enable row level security;

revoke all on table public.organization_seats from public, anon, authenticated, service_role;
grant select on table public.organization_seats to authenticated, service_role;
grant insert (organization_id, user_id, role, status) on table public.organization_seats
to service_role;
grant update (role, status) on table public.organization_seats to service_role;

comment on table public.organization_seats is
'A user''s seat in an organization (one per user per org). Only status active lets the user '
'spend the org pool; seats are revoked, never deleted, so the ledger keeps pointing at them.';
comment on column public.organization_seats.role is
'Seat role: owner, admin or member. Owners and admins (with an active seat) read the org''s '
'seats and transactions.';
comment on column public.organization_seats.status is
'active (may spend the org pool), pending (invited, not yet seated), suspended, revoked. '
'A manual suspended or revoked is a hold: no Clerk event changes it (docs/database.md, L1).';
comment on column public.organization_seats.status_changed_at is
'When the status last changed: Clerk''s event time for a change by the webhook sync, now() for a '
'manual one. A Clerk event older than this does not change the status (ordering, L1).';
comment on column public.organization_seats.status_changed_by is
'clerk (apply_clerk_event) or manual (set_seat_status, an org admin through the issuer, or the '
'service). A manual suspended/revoked seat is held: only another manual change lifts it.';

-- set_seat_status ------------------------------------------------------------

create function public.set_seat_status(
    p_clerk_org_id text,
    p_clerk_user_id text,
    p_status text
)
returns public.organization_seats
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_seat public.organization_seats;
begin
    -- The domain's values (public.seat_status); a cast would raise 23514, not 22023.
    if p_status is null or p_status not in ('active', 'pending', 'suspended', 'revoked') then
        raise exception 'p_status must be one of active, pending, suspended, revoked'
            using errcode = '22023';
    end if;

    -- Stamped even when the status does not change: re-setting revoked on a
    -- seat Clerk revoked makes it a hold.
    update public.organization_seats as s
    set status = p_status,
        status_changed_at = pg_catalog.now(),
        status_changed_by = 'manual'
    from public.organizations as o, public.users as u
    where
        o.clerk_org_id = p_clerk_org_id
        and u.clerk_user_id = p_clerk_user_id
        and s.organization_id = o.id
        and s.user_id = u.id
    returning s.* into v_seat;

    if not found then
        raise exception 'no seat for p_clerk_user_id % in p_clerk_org_id %',
            p_clerk_user_id, p_clerk_org_id
            using errcode = 'P0002';
    end if;
    return v_seat;
end
$$;

revoke all on function public.set_seat_status(text, text, text)
from public, anon, authenticated, service_role;
grant execute on function public.set_seat_status(text, text, text) to service_role;

comment on function public.set_seat_status(text, text, text) is
'Set the status of a user''s seat in an organization (active, pending, suspended, revoked) '
'and return the seat. A manual change, stamped now: suspended and revoked are holds that no '
'Clerk event lifts; setting active or pending lifts a hold (L1, docs/database.md). '
'Service role only: an org admin acts through the issuer. '
'Bad status: SQLSTATE 22023; no such seat: P0002. Security definer: it writes the stamp '
'columns, which the service role cannot.';

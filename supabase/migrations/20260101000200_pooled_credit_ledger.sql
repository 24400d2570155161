-- Pooled credits and the append-only ledger.
--
-- organization_subscriptions  an org's Stripe subscriptions; the current one
--                             holds the org's pooled credits
-- subscription_allows_spending()  which statuses may spend (trialing, active)
-- credit_result               what every credit RPC returns
-- credit_refusal()            a refusal as a credit_result (ok false, reason)
-- credit_transactions         the ledger: one row per grant, deduction or
--                             refund; never updated, deleted or truncated
-- credit_consistency_check()  pools whose balance differs from their ledger
--
-- Amounts are numeric(20, 4): four decimals, up to 10^16. The RPCs reject
-- more decimals, NaN, infinities and single amounts above 10^12.

-- organization_subscriptions -------------------------------------------------

-- A domain, not a table check: Postgres 15 re-reads a table's checks on
-- every update, also the balance update of each deduction, while a domain is
-- checked only when a value is written to the column.
create domain public.subscription_status as text
check (
    value in (
        'trialing', 'active', 'past_due', 'canceled', 'unpaid',
        'incomplete', 'incomplete_expired', 'paused'
    )
);

comment on domain public.subscription_status is
'Stripe subscription status (text).';

create table public.organization_subscriptions (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references public.organizations (id),
    stripe_subscription_id text unique,
    status public.subscription_status not null,
    is_current boolean not null default true,
    credits_balance numeric(20, 4) not null default 0
    check (credits_balance >= 0),
    current_period_start timestamptz,
    current_period_end timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint organization_subscriptions_period_order
    check (current_period_end > current_period_start),
    -- Target of the ledger's (organization_subscription_id, organization_id)
    -- foreign key: a ledger row's org is always its subscription's org.
    constraint organization_subscriptions_id_organization_id_key
    unique (id, organization_id)
);

create unique index organization_subscriptions_one_current_per_org
on public.organization_subscriptions (organization_id)
where is_current;

create index organization_subscriptions_organization_id_idx
on public.organization_subscriptions (organization_id);

-- Profile columns only, as for users: balance changes skip the trigger.
create trigger organization_subscriptions_set_updated_at
before update of organization_id, stripe_subscription_id, status, is_current, current_period_start, current_period_end
on public.organization_subscriptions
for each row
execute function private.set_updated_at();

alter table public.organization_subscriptions enable row level security;

revoke all on table public.organization_subscriptions
from public, anon, authenticated, service_role;
grant select on table public.organization_subscriptions to authenticated, service_role;
grant insert (
    organization_id, stripe_subscription_id, status, is_current,
    current_period_start, current_period_end
) on table public.organization_subscriptions to service_role;
grant update (
    stripe_subscription_id, status, is_current, current_period_start, current_period_end
) on table public.organization_subscriptions to service_role;

comment on table public.organization_subscriptions is
'An organization''s (Stripe) subscriptions. The one with is_current holds the org''s pooled '
'credits (credits_balance), which change only through the credit RPCs.';
comment on column public.organization_subscriptions.status is
'Stripe subscription status. trialing and active may spend the pool '
'(private.subscription_allows_spending); every other status refuses with no_active_subscription.';
comment on column public.organization_subscriptions.is_current is
'The subscription whose pool the org spends and is granted. At most one per org '
'(organization_subscriptions_one_current_per_org): clear it on the old row before setting it '
'on a new one.';
comment on column public.organization_subscriptions.credits_balance is
'Pooled credits of the organization. Never negative; equals the sum of this subscription''s '
'ledger rows (credit_consistency_check).';
comment on column public.organization_subscriptions.current_period_start is
'Start of the current billing period (Stripe); copied into each ledger row as '
'subscription_period_start so usage can be reported per period.';

-- Which statuses may spend ---------------------------------------------------

create function private.subscription_allows_spending(p_status text)
returns boolean
language plpgsql
immutable
set search_path = ''
as $$
begin
    -- plpgsql, not sql: a sql function is planned again in every transaction
    -- (Postgres 15), and this one runs on every org deduction.
    return coalesce(p_status in ('trialing', 'active'), false);
end
$$;

revoke all on function private.subscription_allows_spending(text) from public;

comment on function private.subscription_allows_spending(text) is
'The one place that says which subscription statuses may spend the pool: trialing and active. '
'past_due, unpaid, paused, incomplete, incomplete_expired and canceled may not (fail closed '
'while Stripe has not been paid); credits stay in the pool and become spendable again when '
'the status returns to active. Grants and refunds are not gated by status.';

-- credit_result --------------------------------------------------------------

create type public.credit_result as (
    ok boolean,
    pool text,
    reason text,
    transaction_id uuid,
    amount numeric,
    balance numeric,
    replayed boolean
);

comment on type public.credit_result is
'Result of grant_credits, deduct_credits_pooled and refund_credits. ok: the credits moved. '
'pool: personal or organization. reason: why not (ok = false). transaction_id: the ledger row. '
'amount: the positive amount moved. balance: the pool balance after the operation (for '
'insufficient_credits: the balance that was too low). replayed: an idempotent repeat that '
'returned the first result and moved nothing.';

-- The one shape of a refusal: ok false, nothing moved, a stable reason.
create function private.credit_refusal(
    p_pool text,
    p_reason text,
    p_balance numeric default null
)
returns public.credit_result
language plpgsql
immutable
set search_path = ''
as $$
begin
    -- Called with constants, Postgres folds it once when it plans the
    -- caller's expression (an immutable function of constants): no cost per
    -- call. plpgsql, not sql, for the call with a balance, which is not folded
    -- (a sql function with a SET clause is planned again on every call).
    return row(false, p_pool, p_reason, null, null, p_balance, false)::public.credit_result;
end
$$;

revoke all on function private.credit_refusal(text, text, numeric)
from public, anon, authenticated, service_role;

comment on function private.credit_refusal(text, text, numeric) is
'A refusal as a credit_result: ok = false, p_pool, p_reason (a stable text: '
'docs/database.md lists them), p_balance only for insufficient_credits, nothing moved, '
'not replayed.';

-- credit_transactions --------------------------------------------------------

create function private.uuid_v7()
returns uuid
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_bytes bytea := pg_catalog.uuid_send(pg_catalog.gen_random_uuid());
    v_ms bigint := (extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint;
begin
    -- 48-bit Unix milliseconds, then version 7 (RFC 9562); the rest stays random.
    v_bytes := pg_catalog.overlay(
        v_bytes, pg_catalog.substr(pg_catalog.int8send(v_ms), 3), 1, 6
    );
    v_bytes := pg_catalog.set_bit(pg_catalog.set_bit(v_bytes, 52, 1), 53, 1);
    return pg_catalog.encode(v_bytes, 'hex')::uuid;
end
$$;

revoke all on function private.uuid_v7() from public;

comment on function private.uuid_v7() is
'A time-ordered uuid (version 7): ledger ids are appended to the end of the primary key '
'index instead of landing on a random page, which matters at tens of millions of rows.';

create type public.credit_pool as enum ('personal', 'organization');

comment on type public.credit_pool is
'Which balance a ledger row moves: personal (users.credits_balance) or organization '
'(organization_subscriptions.credits_balance).';

create type public.credit_kind as enum ('grant', 'deduction', 'refund');

comment on type public.credit_kind is
'grant (amount > 0), deduction (amount < 0), refund (amount > 0, points at a deduction).';

-- Every deduction inserts here while it holds the pool row's lock, and
-- Postgres 15 re-reads a table's check constraints for every statement. So
-- pool and kind are enums (checked when the RPC is planned, not per row) and
-- the checks below are few and small. The rest of a row's shape (lengths of
-- description and idempotency_key, a user and a seat on every org deduction)
-- is guaranteed by the RPCs, the only writers, and covered by the tests.
create table public.credit_transactions (
    id uuid primary key default private.uuid_v7(),
    created_at timestamptz not null default now(),
    pool public.credit_pool not null,
    kind public.credit_kind not null,
    user_id uuid references public.users (id),
    organization_id uuid,
    organization_subscription_id uuid,
    seat_id uuid references public.organization_seats (id),
    amount numeric(20, 4) not null,
    balance_after numeric(20, 4) not null check (balance_after >= 0),
    description text not null,
    idempotency_key text,
    request_fingerprint text,
    refund_of_transaction_id uuid references public.credit_transactions (id),
    subscription_period_start timestamptz,
    subscription_period_end timestamptz,
    metadata jsonb not null default '{}',
    -- The org is always the subscription's org (both set or both null); an
    -- org-pool row never locks the hot organizations row for a key check.
    constraint credit_transactions_subscription_fkey
    foreign key (organization_subscription_id, organization_id)
    references public.organization_subscriptions (id, organization_id)
    match full,
    constraint credit_transactions_amount_sign
    check ((kind = 'deduction') = (amount < 0)),
    constraint credit_transactions_pool_owner
    check ((pool = 'organization') = (organization_id is not null)),
    constraint credit_transactions_refund_points_back
    check ((kind = 'refund') = (refund_of_transaction_id is not null))
);

-- Analytics and policy filters; each leading column also covers a foreign key.
create index credit_transactions_organization_id_created_at_idx
on public.credit_transactions (organization_id, created_at);
create index credit_transactions_subscription_created_at_idx
on public.credit_transactions (organization_subscription_id, organization_id, created_at);
create index credit_transactions_seat_id_created_at_idx
on public.credit_transactions (seat_id, created_at);
create index credit_transactions_user_id_created_at_idx
on public.credit_transactions (user_id, created_at);
create index credit_transactions_refund_of_idx
on public.credit_transactions (refund_of_transaction_id)
where refund_of_transaction_id is not null;

-- Idempotency keys (SECURITY.md L7) are unique per namespace: a deduction's
-- key per spender (the user) in its pool, so one member can neither block nor
-- probe another member's request; grants and refunds each have their own
-- namespace per pool owner, which no deduction key can squat.
create unique index credit_transactions_org_deduction_idempotency_key
on public.credit_transactions (organization_id, user_id, idempotency_key)
where pool = 'organization' and kind = 'deduction' and idempotency_key is not null;
create unique index credit_transactions_personal_deduction_idempotency_key
on public.credit_transactions (user_id, idempotency_key)
where pool = 'personal' and kind = 'deduction' and idempotency_key is not null;
create unique index credit_transactions_org_billing_idempotency_key
on public.credit_transactions (organization_id, kind, idempotency_key)
where pool = 'organization' and kind <> 'deduction' and idempotency_key is not null;
create unique index credit_transactions_personal_billing_idempotency_key
on public.credit_transactions (user_id, kind, idempotency_key)
where pool = 'personal' and kind <> 'deduction' and idempotency_key is not null;

-- Append-only: no role holds update, delete or truncate, and these triggers
-- stop the owner too (statement level, so even a statement matching no row).
create function private.forbid_ledger_changes()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception 'credit_transactions is append-only: % is not allowed', tg_op
        using
            errcode = '42501',
            hint = 'Correct the ledger with a new row (a refund or a grant).';
end
$$;

revoke all on function private.forbid_ledger_changes() from public;

comment on function private.forbid_ledger_changes() is
'Trigger: refuses update, delete and truncate on credit_transactions (SQLSTATE 42501).';

create trigger credit_transactions_append_only
before update or delete on public.credit_transactions
for each statement
execute function private.forbid_ledger_changes();

create trigger credit_transactions_no_truncate
before truncate on public.credit_transactions
for each statement
execute function private.forbid_ledger_changes();

alter table public.credit_transactions enable row level security;

revoke all on table public.credit_transactions from public, anon, authenticated, service_role;
grant select on table public.credit_transactions to authenticated, service_role;

comment on table public.credit_transactions is
'Append-only credit ledger: one row per grant, deduction or refund, written only by the credit '
'RPCs. The sum of a pool''s rows equals its balance.';
comment on column public.credit_transactions.id is
'Time-ordered uuid (version 7, private.uuid_v7()).';
comment on column public.credit_transactions.pool is
'personal (users.credits_balance) or organization (organization_subscriptions.credits_balance).';
comment on column public.credit_transactions.kind is
'grant (amount > 0), deduction (amount < 0) or refund (amount > 0, refund_of_transaction_id set).';
comment on column public.credit_transactions.amount is
'Signed change of the pool balance.';
comment on column public.credit_transactions.balance_after is
'Pool balance right after this row, in commit order.';
comment on column public.credit_transactions.user_id is
'Who spent (deductions), who was granted (personal grants); null for org grants.';
comment on column public.credit_transactions.seat_id is
'Seat the deduction was made under (org pool); null for personal rows and org grants.';
comment on column public.credit_transactions.idempotency_key is
'The caller''s key exactly as sent (the HTTP Idempotency-Key, or the billing system''s key). '
'Unique per namespace (L7): deductions per (pool, spending user); grants and refunds per (pool '
'owner, kind). So the same text may appear on rows of different users or kinds: group by '
'(kind, user_id, idempotency_key) to find retries. A repeat with the same arguments replays the '
'first result.';
comment on column public.credit_transactions.request_fingerprint is
'sha256 of the arguments that produced this row; a repeated idempotency_key must carry the same.';
comment on column public.credit_transactions.refund_of_transaction_id is
'The deduction a refund reverses; refunds of one deduction never exceed its amount.';
comment on column public.credit_transactions.subscription_period_start is
'The subscription''s current_period_start when the row was written (refunds: the original''s).';
comment on column public.credit_transactions.subscription_period_end is
'The subscription''s current_period_end when the row was written (refunds: the original''s).';
comment on column public.credit_transactions.metadata is
'Attribution: pool, clerk_user_id and, for the org pool, clerk_org_id, organization_id, '
'organization_name, stripe_customer_id, organization_subscription_id, seat_id, seat_role; '
'refunds add refund_of. The caller''s p_context is stored under context.';

-- credit_consistency_check ---------------------------------------------------

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
$$;

revoke all on function public.credit_consistency_check() from public, anon, authenticated, service_role;
grant execute on function public.credit_consistency_check() to service_role;

comment on function public.credit_consistency_check() is
'Every pool whose balance differs from the sum of its ledger rows: pool (personal or '
'organization), owner_id (users.id or organization_subscriptions.id), balance, ledger_sum. '
'Empty when all is well. Reads the whole ledger: an operations check, not a hot path. '
'Service role only; security invoker (the service role reads every table).';

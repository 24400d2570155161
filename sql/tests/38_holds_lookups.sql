-- H1: capture_credits and void_hold find their hold by its primary key and
-- its owner with one probe, whatever plan the planner picks. plpgsql caches
-- a generic plan; with a join of credit_holds to users the generic plan was a
-- merge join that walked users' primary key from its first entry to the
-- owner's id: every capture read the whole users index on a project with
-- many users (docs/performance.md, holds). Counted here, in this transaction,
-- with pg_stat_get_xact_tuples_returned on users' indexes: the owner sorts last among 3,000 users, so
-- a walk reads thousands of index entries and a probe reads one. The
-- finished holds below make the statistics that chose the merge join.
--
-- The same for credit_holds' own indexes: capture's first try updates the
-- hold by its primary key with "released_at is null", not "state = 'held'",
-- which would match the partial indexes of live holds. Statistics taken
-- while no hold was live make those indexes look empty, and a generic plan
-- that scans one reads every live hold of the pool on each capture. The
-- 2,000 live holds below arrive after the ANALYZE, as a busy pool's do.
begin;
select plan(7);

insert into public.users (clerk_user_id)
select 'user_filler_' || g from generate_series(1, 3000) as g;
insert into public.users (id, clerk_user_id)
values
('ffffffff-ffff-4fff-bfff-ffffffffffff', 'user_alice'),
('00000000-0000-4000-8000-000000000001', 'user_early');
-- Finished holds, as a deployed table keeps a day of them, all of a user who
-- sorts first: the statistics then promise the planner a merge join that
-- stops early, and alice, who sorts last, makes it walk the whole index.
insert into public.credit_holds (
    pool, user_id, amount, available_after, expires_at, state, released_at, description
)
select
    'personal' as pool,
    '00000000-0000-4000-8000-000000000001'::uuid as user_id,
    1 as amount,
    0 as available_after,
    now() - interval '1 minute' as expires_at,
    'voided' as state,
    now() - interval '1 minute' as released_at,
    'finished' as description
from generate_series(1, 2000);
select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_alice', 'member', 'active');
analyze public.users;
analyze public.credit_holds;
set local plan_cache_mode = force_generic_plan;
-- The 2000 live holds below are alice's: above H4's bound of live holds per
-- seat (its own test: 32_holds_bounded.sql). Lifted for this lookup test.
update private.hold_limits set max_live_holds = 100000;

-- Live holds of the pool, after the statistics (held counts them: exact).
insert into public.credit_holds (
    pool, user_id, organization_id, organization_subscription_id, seat_id, amount,
    available_after, expires_at, description
)
select
    'organization' as pool,
    s.user_id,
    s.organization_id,
    sub.id as organization_subscription_id,
    s.id as seat_id,
    0.01 as amount,
    0 as available_after,
    now() + interval '5 minutes' as expires_at,
    'live' as description
from generate_series(1, 2000)
cross join public.organization_seats as s
inner join public.organizations as o on s.organization_id = o.id
inner join public.organization_subscriptions as sub
    on sub.organization_id = s.organization_id and sub.is_current
where o.clerk_org_id = 'org_acme';
update public.organization_subscriptions set held = held + 20
where organization_id = (select id from public.organizations where clerk_org_id = 'org_acme');

create temp table h on commit drop as
select
    (public.authorize_credits('user_alice', 10, 'stream one', 'org_acme')).hold_id as one,
    (public.authorize_credits('user_alice', 10, 'stream two', 'org_acme')).hold_id as two;

create temp table seen (step text, entries_read bigint) on commit drop;
-- Index entries read so far in this transaction from one table's indexes.
create function pg_temp.entries_read(p_table regclass) returns bigint
language sql as $$
    select coalesce(sum(pg_catalog.pg_stat_get_xact_tuples_returned(i.indexrelid)), 0)::bigint
    from pg_catalog.pg_index as i
    where i.indrelid = p_table
$$;

insert into seen values ('before capture', pg_temp.entries_read('public.users'));
insert into seen values ('holds before capture', pg_temp.entries_read('public.credit_holds'));
select is(
    (select ok from public.capture_credits((select one from h), 'user_alice', 7)), true,
    'H1: the capture succeeds (generic plans, 3,001 users)'
);
insert into seen values ('after capture', pg_temp.entries_read('public.users'));
insert into seen values ('holds after capture', pg_temp.entries_read('public.credit_holds'));
select cmp_ok(
    (select max(entries_read) - min(entries_read) from seen where step not like 'holds%'), '<=', 5::bigint,
    'H1: the capture reads at most a few entries of users'' indexes, not a walk of them'
);
select cmp_ok(
    (select max(entries_read) - min(entries_read) from seen where step like 'holds%'), '<=', 5::bigint,
    'H1: and at most a few entries of credit_holds'' indexes, not the pool''s 2,000 live holds'
);

delete from seen;
insert into seen values ('before void', pg_temp.entries_read('public.users'));
select is(
    (select ok from public.void_hold((select two from h), 'user_alice')), true,
    'H1: the void succeeds'
);
insert into seen values ('after void', pg_temp.entries_read('public.users'));
select cmp_ok(
    (select max(entries_read) - min(entries_read) from seen), '<=', 5::bigint,
    'H1: the void reads at most a few entries of users'' indexes'
);

select is(
    (select reason from public.capture_credits((select two from h), 'user_filler_1', 1)),
    'hold_not_yours',
    'H1: another user''s capture is still refused with hold_not_yours'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'H1: balances, ledger and held stay exact'
);

select * from finish();
rollback;

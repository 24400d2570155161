-- H1: capture_credits and void_hold find their hold by its primary key and
-- its owner with one probe, whatever plan the planner picks. plpgsql caches
-- a generic plan; with a join of credit_holds to users the generic plan was a
-- merge join that walked users' primary key from its first entry to the
-- owner's id: every capture read the whole users index on a project with
-- many users (docs/performance.md, holds). Counted here, in this transaction,
-- with pg_stat_get_xact_tuples_returned on users' indexes: the owner sorts last among 3,000 users, so
-- a walk reads thousands of index entries and a probe reads one. The
-- finished holds below make the statistics that chose the merge join.
begin;
select plan(6);

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

create temp table h on commit drop as
select
    (public.authorize_credits('user_alice', 10, 'stream one', 'org_acme')).hold_id as one,
    (public.authorize_credits('user_alice', 10, 'stream two', 'org_acme')).hold_id as two;

create temp table seen (step text, users_read bigint) on commit drop;
create function pg_temp.users_read() returns bigint
language sql as $$
    select coalesce(sum(pg_catalog.pg_stat_get_xact_tuples_returned(i.indexrelid)), 0)::bigint
    from pg_catalog.pg_index as i
    where i.indrelid = 'public.users'::regclass
$$;

insert into seen values ('before capture', pg_temp.users_read());
select is(
    (select ok from public.capture_credits((select one from h), 'user_alice', 7)), true,
    'H1: the capture succeeds (generic plans, 3,001 users)'
);
insert into seen values ('after capture', pg_temp.users_read());
select cmp_ok(
    (select max(users_read) - min(users_read) from seen), '<=', 5::bigint,
    'H1: the capture reads at most a few entries of users'' indexes, not a walk of them'
);

delete from seen;
insert into seen values ('before void', pg_temp.users_read());
select is(
    (select ok from public.void_hold((select two from h), 'user_alice')), true,
    'H1: the void succeeds'
);
insert into seen values ('after void', pg_temp.users_read());
select cmp_ok(
    (select max(users_read) - min(users_read) from seen), '<=', 5::bigint,
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

-- H5: a cap taken under one period is given back to that same period's
-- counter. Seen before (issue 28): cap 10/day, a hold of 10, the admin
-- switches the cap to 20/month, a deduction of 8, a capture for 0.0001:
-- 9.9999 was given back to the MONTH counter (the seat's current kind), so
-- 28.0001 could be spent against 20/month. A hold now records the counter it
-- took from (credit_holds.cap_period, cap_period_start) and gives back only
-- there; a capture whose seat now counts in another counter counts there too.
begin;
select plan(20);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'active', 1000);
select tests.create_seat('org_acme', 'user_cap', 'member', 'active');
select tests.create_seat('org_acme', 'user_void', 'member', 'active');
select tests.create_seat('org_acme', 'user_exp', 'member', 'active');
select tests.create_seat('org_acme', 'user_next', 'member', 'active');

create function pg_temp.counter(p_user text, p_period text) returns numeric
language sql stable as $$
    select coalesce(sum(c.spent), 0) from public.seat_cap_spend as c
    where c.seat_id = tests.seat_id('org_acme', p_user) and c.period = p_period
$$;

create function pg_temp.set_cap(p_user text, p_cap numeric, p_period text) returns void
language plpgsql as $$
begin
    perform tests.act_as_service_role();
    perform public.set_seat_cap(tests.seat_id('org_acme', p_user), p_cap, p_period);
    perform tests.reset_role();
end
$$;

-- The story as seen: capture ------------------------------------------------------

select pg_temp.set_cap('user_cap', 10, 'day');
create temp table h on commit drop as
select (public.authorize_credits('user_cap', 10, 'stream', 'org_acme')).hold_id as id;
select is(pg_temp.counter('user_cap', 'day'), 10::numeric, 'H5: the hold of 10 counts in the day counter');
select pg_temp.set_cap('user_cap', 20, 'month');
select is(
    (select ok from public.deduct_credits_pooled('user_cap', 8, 'direct', 'org_acme')), true,
    'H5: the admin switched to 20/month; a deduction of 8'
);
select is(pg_temp.counter('user_cap', 'month'), 8::numeric, 'H5: the month counter: 8');
select is(
    (select ok from public.capture_credits((select id from h), 'user_cap', 0.0001)), true,
    'H5: the hold of 10 is captured for 0.0001'
);
select is(
    pg_temp.counter('user_cap', 'day'), 0.0001::numeric,
    'H5: the 9.9999 not captured go back to the day counter it was taken from'
);
select is(
    pg_temp.counter('user_cap', 'month'), 8.0001::numeric,
    'H5: the month counter gets nothing back, and counts the capture (spent this month)'
);
select is(
    (select ok from public.deduct_credits_pooled('user_cap', 11.9999, 'up to the cap', 'org_acme')),
    true,
    'H5: 11.9999 more reach the cap of 20 exactly'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_cap', 0.0001, 'past the cap', 'org_acme') $$,
    $$ values (false, 'seat_cap_reached') $$,
    'H5: and nothing more: 20, not 28.0001, spent against 20/month'
);
select is(
    (
        select -sum(amount) from public.credit_transactions
        where seat_id = tests.seat_id('org_acme', 'user_cap')
    ),
    20::numeric,
    'H5: the ledger agrees: 20 spent this month'
);

-- Void -----------------------------------------------------------------------

select pg_temp.set_cap('user_void', 10, 'day');
create temp table v on commit drop as
select (public.authorize_credits('user_void', 6, 'stream', 'org_acme')).hold_id as id;
select pg_temp.set_cap('user_void', 20, 'month');
select is(
    (select ok from public.deduct_credits_pooled('user_void', 8, 'direct', 'org_acme')), true,
    'H5: (void) hold 6 under 10/day, switch to 20/month, a deduction of 8'
);
select is((select ok from public.void_hold((select id from v), 'user_void')), true, 'H5: the hold is voided');
select results_eq(
    $$ select pg_temp.counter('user_void', 'day'), pg_temp.counter('user_void', 'month') $$,
    $$ values (0::numeric, 8::numeric) $$,
    'H5: the void gives its 6 back to the day counter; the month counter keeps 8'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_void', 12.0001, 'past', 'org_acme') $$,
    $$ values (false, 'seat_cap_reached') $$,
    'H5: 12.0001 more would pass 20/month: refused'
);

-- Expiry (swept, then given back by the purge) ----------------------------------------

select pg_temp.set_cap('user_exp', 10, 'day');
create temp table e on commit drop as
select (public.authorize_credits('user_exp', 6, 'stream', 'org_acme', null, '{}', '1 minute')).hold_id as id;
select pg_temp.set_cap('user_exp', 20, 'month');
select is(
    (select ok from public.deduct_credits_pooled('user_exp', 8, 'direct', 'org_acme')), true,
    'H5: (expiry) hold 6 under 10/day, switch to 20/month, a deduction of 8'
);
update public.credit_holds set expires_at = now() - interval '1 second'
where id = (select e.id from e);
select public.purge_expired_holds();  -- sweeps it (cap_pending)
select public.purge_expired_holds();  -- gives its cap back
select is(
    (select state from public.credit_holds where id = (select e.id from e)), 'expired',
    'H5: the hold expired and was swept'
);
select results_eq(
    $$ select pg_temp.counter('user_exp', 'day'), pg_temp.counter('user_exp', 'month') $$,
    $$ values (0::numeric, 8::numeric) $$,
    'H5: the expiry gives its 6 back to the day counter; the month counter keeps 8'
);

-- A period that has ended: the new one gets nothing back ----------------------------

select pg_temp.set_cap('user_next', 10, 'day');
create temp table n on commit drop as
select (public.authorize_credits('user_next', 6, 'stream', 'org_acme')).hold_id as id;
-- As if the hold had been authorized yesterday (its counter is yesterday's).
update public.seat_cap_spend set period_start = period_start - interval '1 day'
where seat_id = tests.seat_id('org_acme', 'user_next');
update public.credit_holds set cap_period_start = cap_period_start - interval '1 day'
where id = (select id from n);
select is(
    (select ok from public.deduct_credits_pooled('user_next', 3, 'today', 'org_acme')), true,
    'H5: (new period) a deduction of 3 today'
);
select is(
    (select ok from public.capture_credits((select id from n), 'user_next', 2)), true,
    'H5: yesterday''s hold of 6 is captured for 2 today'
);
select results_eq(
    $$ select period_start < date_trunc('day', now(), 'UTC'), spent
       from public.seat_cap_spend
       where seat_id = tests.seat_id('org_acme', 'user_next') order by period_start $$,
    $$ values (true, 2::numeric), (false, 5::numeric) $$,
    'H5: yesterday''s counter gets the 4 back; today''s gets nothing back and counts the 2 captured'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'H1 x H5: balances, ledger and held stay exact'
);

select * from finish();
rollback;

-- H1 x H3: a capture is a debit like a deduction: crossing a low-balance
-- threshold downwards writes one alert, and a pool without thresholds is
-- never looked at by the alert helper (the capture skips it, as a deduction
-- does). An authorize moves no credit, so it never alerts.
begin;
select plan(5);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_alice', 'member', 'active');
select tests.act_as_service_role();
select public.set_low_balance_thresholds(
    (select o.id from public.organizations as o where o.clerk_org_id = 'org_acme'),
    array[50]::numeric[], null
);
select tests.reset_role();

create temp table h on commit drop as
select * from public.authorize_credits('user_alice', 60, 'stream', 'org_acme');
select is((select ok from h), true, 'H1: a hold of 60 on a pool of 100');
select is_empty(
    $$ select * from public.low_balance_alerts $$,
    'H3: an authorize moves no credit: no alert (available 40 is not the balance)'
);
select is(
    (select ok from public.capture_credits((select hold_id from h), 'user_alice', 55)), true,
    'H1: captured 55 (balance 100 -> 45)'
);
select results_eq(
    $$ select threshold, balance_before, balance_after from public.low_balance_alerts $$,
    $$ values (50::numeric(20, 4), 100::numeric(20, 4), 45::numeric(20, 4)) $$,
    'H3: the capture crossed 50 downwards: one alert, with its exact before and after'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'H1 x H3: balances, ledger and held stay exact'
);

select * from finish();
rollback;

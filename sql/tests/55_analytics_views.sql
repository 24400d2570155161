-- Analytics views: security invoker, service role only, and the numbers add up.
begin;
select plan(15);

select has_view('public', 'credit_usage_by_org_day', 'usage per org per day');
select has_view('public', 'credit_usage_by_seat', 'usage per seat');
select has_view('public', 'credit_usage_by_subscription_period', 'usage per subscription period');
select has_view('public', 'credit_balances', 'current balances');
select is(
    (
        select count(*)::int from pg_catalog.pg_class as c
        where c.oid in (
                'public.credit_usage_by_org_day'::regclass, 'public.credit_usage_by_seat'::regclass,
                'public.credit_usage_by_subscription_period'::regclass, 'public.credit_balances'::regclass
            )
            and c.reloptions @> array['security_invoker=true']
    ),
    4,
    'every analytics view is security_invoker'
);

select tests.create_rls_story();
select public.deduct_credits_pooled('user_member', 2.5, 'more', 'org_acme');
select public.refund_credits((select id from public.credit_transactions where description = 'more'), 0.5);

select tests.act_as_service_role();
select results_eq(
    $$ select clerk_org_id, deductions, credits_used, credits_refunded, net_credits_used, credits_granted,
              active_seats
       from public.credit_usage_by_org_day order by clerk_org_id $$,
    $$ values ('org_acme', 3::bigint, 4.5::numeric, 0.5::numeric, 4::numeric, 100::numeric, 2::bigint),
              ('org_globex', 1::bigint, 1::numeric, 0::numeric, 1::numeric, 50::numeric, 1::bigint) $$,
    'usage per org per day'
);
select is(
    (select min(usage_date) from public.credit_usage_by_org_day),
    (now() at time zone 'UTC')::date,
    'days are UTC days'
);
select results_eq(
    $$ select clerk_user_id, seat_role, deductions, credits_used, credits_refunded, net_credits_used
       from public.credit_usage_by_seat order by clerk_org_id, clerk_user_id $$,
    $$ values ('user_admin', 'admin', 1::bigint, 1::numeric, 0::numeric, 1::numeric),
              ('user_member', 'member', 2::bigint, 3.5::numeric, 0.5::numeric, 3::numeric),
              ('user_b', 'admin', 1::bigint, 1::numeric, 0::numeric, 1::numeric) $$,
    'usage per seat'
);
select results_eq(
    $$ select stripe_subscription_id, subscription_period_start, credits_granted, credits_used, credits_refunded,
              net_credits_used
       from public.credit_usage_by_subscription_period order by stripe_subscription_id $$,
    $$ values ('sub_acme', '2026-01-01 00:00:00+00'::timestamptz, 100::numeric, 4.5::numeric, 0.5::numeric, 4::numeric),
              ('sub_globex', '2026-01-01 00:00:00+00'::timestamptz, 50::numeric, 1::numeric, 0::numeric, 1::numeric) $$,
    'usage per subscription period'
);
select results_eq(
    $$ select pool, coalesce(clerk_org_id, clerk_user_id), balance from public.credit_balances
       where balance > 0 order by 2 $$,
    $$ values ('organization', 'org_acme', 96::numeric), ('organization', 'org_globex', 49::numeric),
              ('personal', 'user_a', 9::numeric) $$,
    'current balances of every pool'
);
select is_empty(
    $$ select b.pool, b.owner_id, b.balance from public.credit_balances as b
       except
       select b.pool, b.owner_id, b.balance from public.credit_balances as b
       left join public.credit_consistency_check() as c on b.owner_id = c.owner_id
       where c.owner_id is null $$,
    'credit_balances agrees with the consistency check (same owner ids)'
);
select tests.reset_role();

select tests.act_as_user('user_admin');
select throws_ok(
    $$ select * from public.credit_usage_by_org_day $$, '42501', null,
    'a signed-in admin cannot read the analytics views'
);
select throws_ok($$ select * from public.credit_balances $$, '42501', null, 'nor the balances view');
select tests.act_as_anon();
select throws_ok($$ select * from public.credit_usage_by_seat $$, '42501', null, 'anon cannot read them');
select throws_ok(
    $$ select * from public.credit_usage_by_subscription_period $$, '42501', null, 'none of them'
);
select tests.reset_role();

select * from finish();
rollback;

-- Spending personal credits: no organization named.
begin;
select plan(8);

select tests.create_user('user_solo', p_personal_credits => 20);
select tests.create_org('org_acme', 'Acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_solo', 'member', 'active');

select tests.act_as_service_role();
create temp table spent on commit drop as
select * from public.deduct_credits_pooled('user_solo', 5, 'personal run', p_context => '{"job": 1}');
select tests.reset_role();

select results_eq(
    $$ select ok, pool, reason, amount, balance, replayed from spent $$,
    $$ values (true, 'personal', null::text, 5::numeric, 15::numeric, false) $$,
    'without an org the user spends personal credits'
);
select is(tests.personal_balance('user_solo'), 15::numeric, 'personal credits went down');
select is(tests.pool_balance('org_acme'), 100::numeric, 'the org pool of an org they belong to is untouched');
select results_eq(
    $$ select pool::text, kind::text, amount, balance_after, organization_id, seat_id,
              organization_subscription_id, metadata
       from public.credit_transactions where id = (select transaction_id from spent) $$,
    $$ values ('personal', 'deduction', -5::numeric, 15::numeric, null::uuid, null::uuid, null::uuid,
               '{"pool": "personal", "clerk_user_id": "user_solo", "context": {"job": 1}}'::jsonb) $$,
    'the ledger row is personal: no org, seat or subscription; context under context'
);

select tests.act_as_service_role();
select results_eq(
    $$ select ok, pool, reason, balance from public.deduct_credits_pooled('user_solo', 15.0001, 'too much') $$,
    $$ values (false, 'personal', 'insufficient_credits', 15::numeric) $$,
    'more than the personal balance is refused, with the balance that was too low'
);
select results_eq(
    $$ select ok, balance from public.deduct_credits_pooled('user_solo', 15, 'the rest') $$,
    $$ values (true, 0::numeric) $$,
    'personal credits can be spent down to exactly zero'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_solo', 1, 'empty') $$,
    $$ values (false, 'insufficient_credits') $$,
    'an empty personal balance refuses'
);
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_nobody', 1, 'who?') $$,
    $$ values (false, 'personal', 'unknown_user') $$,
    'an unknown user is refused'
);
select tests.reset_role();

select * from finish();
rollback;

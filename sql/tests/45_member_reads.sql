-- Reads for signed-in users: their personal balance, and per org where they
-- hold an active seat the pool balance and their own usage this period.
begin;
select plan(12);

select tests.create_rls_story();
select tests.create_org('org_trial', 'Trial Co');
select tests.create_subscription('org_trial', 'past_due', 5, 'sub_trial');
select tests.create_seat('org_trial', 'user_member', 'member', 'active');
select tests.create_org('org_nosub', 'No Sub');
select tests.create_seat('org_nosub', 'user_member', 'member', 'active');
-- More usage by the member this period, one refund, then a new billing period.
select public.deduct_credits_pooled('user_member', 4, 'more', 'org_acme');
select public.refund_credits(
    (select id from public.credit_transactions where description = 'more'), 1.5
);
-- An earlier period: move the subscription's period forward after a deduction.
select public.deduct_credits_pooled('user_member', 2, 'older period', 'org_acme');
update public.organization_subscriptions
set current_period_start = '2026-02-01', current_period_end = '2026-03-01'
where stripe_subscription_id = 'sub_acme';
select public.deduct_credits_pooled('user_member', 0.25, 'new period', 'org_acme');

select tests.act_as_user('user_a');
select is(public.get_my_personal_balance(), 9::numeric, 'user A reads their personal balance');
select is_empty($$ select * from public.get_my_org_pools() $$, 'user A has no org pools');

select tests.act_as_user('user_member');
select is(public.get_my_personal_balance(), 0::numeric, 'a member without personal credits reads 0');
select results_eq(
    $$ select clerk_org_id, organization_name, seat_role, subscription_status, can_spend, pool_balance,
              my_usage_this_period
       from public.get_my_org_pools() $$,
    $$ values
        ('org_acme', 'Acme', 'member', 'active', true, 93.25::numeric, 0.25::numeric),
        ('org_nosub', 'No Sub', 'member', null, false, null, 0::numeric),
        ('org_trial', 'Trial Co', 'member', 'past_due', false, 5::numeric, 0::numeric) $$,
    'a member reads each pool they hold an active seat in, and only their own usage this period'
);

select tests.act_as_user('user_admin');
select results_eq(
    $$ select clerk_org_id, seat_role, pool_balance, my_usage_this_period from public.get_my_org_pools() $$,
    $$ values ('org_acme', 'admin', 93.25::numeric, 0::numeric) $$,
    'an admin''s own usage excludes the members'' (and the older period)'
);

select tests.act_as_user('user_exadmin');
select is_empty($$ select * from public.get_my_org_pools() $$, 'a revoked seat shows no pool');
select tests.act_as_user('user_nobody');
select is(public.get_my_personal_balance(), null, 'a user without a row has no balance');
select is_empty($$ select * from public.get_my_org_pools() $$, 'and no pools');

select tests.reset_role();
update public.organization_subscriptions
set current_period_start = '2026-01-01', current_period_end = '2026-02-01'
where stripe_subscription_id = 'sub_acme';
select tests.act_as_user('user_member');
select results_eq(
    $$ select my_usage_this_period from public.get_my_org_pools() where clerk_org_id = 'org_acme' $$,
    $$ values (1 + 4 - 1.5 + 2::numeric) $$,
    'usage is net of refunds and counted per billing period'
);

select tests.act_as_anon();
select throws_ok($$ select public.get_my_org_pools() $$, '42501', null, 'anon cannot call get_my_org_pools');
select throws_ok(
    $$ select public.get_my_personal_balance() $$, '42501', null,
    'anon cannot call get_my_personal_balance'
);
select tests.act_as_service_role();
select throws_ok(
    $$ select public.get_my_org_pools() $$, '42501', null,
    'the service role has no "my": it reads the tables instead'
);
select tests.reset_role();

select * from finish();
rollback;

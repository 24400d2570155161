-- C2: when an organization is named, the org pool pays or nobody does.
-- Personal credits are never a fallback, whatever the balances.
begin;
select plan(8);

select tests.create_org('org_acme', 'Acme');
select tests.create_subscription('org_acme', 'active', 0);
select tests.create_user('user_rich', p_personal_credits => 1000000);
select tests.create_seat('org_acme', 'user_rich', 'member', 'active');
select tests.create_org('org_nosub', 'No Subscription');
select tests.create_seat('org_nosub', 'user_rich', 'member', 'active');
select tests.create_org('org_other', 'Other');
select tests.create_subscription('org_other', 'active', 50);

select tests.act_as_service_role();
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_rich', 1, 'chat', 'org_acme') $$,
    $$ values (false, 'organization', 'insufficient_credits') $$,
    'a member with an empty org pool and a rich personal balance gets insufficient_credits'
);
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_rich', 1, 'chat', 'org_nosub') $$,
    $$ values (false, 'organization', 'no_active_subscription') $$,
    'an org without a subscription does not fall back either'
);
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_rich', 1, 'chat', 'org_other') $$,
    $$ values (false, 'organization', 'no_active_seat') $$,
    'nor does an org where the user has no seat'
);
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_rich', 1, 'chat', 'org_unknown') $$,
    $$ values (false, 'organization', 'unknown_organization') $$,
    'nor an org the database does not know'
);
select tests.reset_role();

select is(tests.personal_balance('user_rich'), 1000000::numeric, 'personal credits are untouched');
select is(tests.pool_balance('org_other'), 50::numeric, 'no other org''s pool paid either');
select is(
    (select count(*)::int from public.credit_transactions where kind = 'deduction'), 0,
    'no deduction row was written anywhere'
);

select tests.act_as_service_role();
select results_eq(
    $$ select ok, pool from public.deduct_credits_pooled('user_rich', 1, 'chat') $$,
    $$ values (true, 'personal') $$,
    'personal credits pay only when no org is named'
);
select tests.reset_role();

select * from finish();
rollback;

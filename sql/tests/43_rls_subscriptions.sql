-- RLS matrix, organization_subscriptions: active owners and admins read their
-- org's subscriptions (members see their pool through get_my_org_pools).
begin;
select plan(10);

select tests.create_rls_story();

select policies_are(
    'public', 'organization_subscriptions', array['admins read their org''s subscriptions'],
    'organization_subscriptions has exactly its read policy'
);
select policy_roles_are(
    'public', 'organization_subscriptions', 'admins read their org''s subscriptions', array['authenticated'],
    'for authenticated only'
);

select tests.act_as_anon();
select throws_ok($$ select * from public.organization_subscriptions $$, '42501', null, 'anon reads nothing');

select tests.act_as_user('user_a');
select is_empty($$ select * from public.organization_subscriptions $$, 'user A (no seat) reads no subscription');
select tests.act_as_user('user_b');
select results_eq(
    $$ select stripe_subscription_id from public.organization_subscriptions $$, array['sub_globex'],
    'user B (admin of another org) reads only their org''s subscription'
);
select tests.act_as_user('user_member');
select is_empty($$ select * from public.organization_subscriptions $$, 'an org member reads no subscription row');
select tests.act_as_user('user_admin');
select results_eq(
    $$ select stripe_subscription_id, credits_balance from public.organization_subscriptions $$,
    $$ values ('sub_acme', 98::numeric) $$,
    'an org admin reads their org''s subscription and pool balance'
);
select throws_ok(
    $$ update public.organization_subscriptions set credits_balance = 1000000 $$, '42501', null,
    'an org admin cannot write the pool balance'
);

select tests.act_as_service_role();
select results_eq(
    $$ select count(*)::int from public.organization_subscriptions $$, array[2],
    'the service role reads every subscription'
);
select throws_ok(
    $$ update public.organization_subscriptions set credits_balance = 1000000 $$, '42501', null,
    'the service role cannot write a pool balance directly (only the RPCs do)'
);
select tests.reset_role();

select * from finish();
rollback;

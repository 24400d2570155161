-- grant_credits: adds to exactly one pool, with a ledger row like any other.
begin;
select plan(10);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'past_due', 0, 'sub_acme');
select tests.create_user('user_a');
select tests.create_org('org_nosub', 'No Subscription');

select tests.act_as_service_role();
create temp table granted on commit drop as
select * from public.grant_credits(
        250, 'monthly credits', p_clerk_org_id => 'org_acme',
        p_context => '{"invoice": "in_1"}'
    );
select results_eq(
    $$ select ok, pool, reason, amount, balance, replayed from granted $$,
    $$ values (true, 'organization', null::text, 250::numeric, 250::numeric, false) $$,
    'a grant to an org lands in its current subscription''s pool'
);
select results_eq(
    $$ select ok, pool, balance from public.grant_credits(12.3456, 'gift', 'user_a') $$,
    $$ values (true, 'personal', 12.3456::numeric) $$,
    'a grant to a user lands in their personal credits'
);
select results_eq(
    $$ select ok, pool, reason from public.grant_credits(1, 'x', 'user_nobody') $$,
    $$ values (false, 'personal', 'unknown_user') $$,
    'unknown_user is refused'
);
select results_eq(
    $$ select ok, pool, reason from public.grant_credits(1, 'x', p_clerk_org_id => 'org_nowhere') $$,
    $$ values (false, 'organization', 'unknown_organization') $$,
    'unknown_organization is refused'
);
select results_eq(
    $$ select ok, pool, reason from public.grant_credits(1, 'x', p_clerk_org_id => 'org_nosub') $$,
    $$ values (false, 'organization', 'no_active_subscription') $$,
    'an org without a current subscription has no pool to grant to'
);
select tests.reset_role();

select is(tests.pool_balance('org_acme'), 250::numeric, 'grants are not gated by status (past_due here)');
select results_eq(
    $$ select pool::text, kind::text, amount, balance_after, user_id, seat_id, description
       from public.credit_transactions where id = (select transaction_id from granted) $$,
    $$ values ('organization', 'grant', 250::numeric, 250::numeric, null::uuid, null::uuid, 'monthly credits') $$,
    'an org grant row has no user and no seat'
);
select is(
    (select t.metadata from public.credit_transactions as t where t.id = (select g.transaction_id from granted as g)),
    jsonb_build_object(
        'pool', 'organization',
        'clerk_org_id', 'org_acme',
        'organization_id', (select id from public.organizations where clerk_org_id = 'org_acme'),
        'organization_name', 'Acme',
        'stripe_customer_id', 'cus_acme',
        'organization_subscription_id', (
            select id from public.organization_subscriptions where stripe_subscription_id = 'sub_acme'
        ),
        'seat_id', null,
        'seat_role', null,
        'context', '{"invoice": "in_1"}'::jsonb
    ),
    'its metadata has the org attribution with null seat keys, and the context'
);
select is(tests.personal_balance('user_a'), 12.3456::numeric, 'personal balance keeps all four decimals');
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'balances match the ledger after grants'
);

select * from finish();
rollback;

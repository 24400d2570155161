-- Spending an organization's pool: one ledger row with the full attribution,
-- the pool goes down, personal credits are untouched.
begin;
select plan(16);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription(
    'org_acme', 'active', 100, 'sub_acme', '2026-03-01 00:00:00+00', '2026-04-01 00:00:00+00'
);
select tests.create_user('user_member', p_personal_credits => 7);
select tests.create_seat('org_acme', 'user_member', 'member', 'active');

select tests.act_as_service_role();
create temp table spent on commit drop as
select * from public.deduct_credits_pooled(
        'user_member', 12.5, 'chat completion', 'org_acme', null, '{"model": "gpt", "tokens": 1200}'
    );
select tests.reset_role();

select results_eq(
    $$ select ok, pool, reason, amount, balance, replayed from spent $$,
    $$ values (true, 'organization', null::text, 12.5::numeric, 87.5::numeric, false) $$,
    'a member with an active seat spends the org pool and learns the new balance'
);
select is(tests.pool_balance('org_acme'), 87.5::numeric, 'the pool went down by the amount');
select is(tests.personal_balance('user_member'), 7::numeric, 'personal credits are untouched');

create temp table row_ on commit drop as
select t.* from public.credit_transactions as t where t.id = (select s.transaction_id from spent as s);

select is((select count(*)::int from row_), 1, 'the result points at its ledger row');
select results_eq(
    $$ select pool::text, kind::text, amount, balance_after, description from row_ $$,
    $$ values ('organization', 'deduction', -12.5::numeric, 87.5::numeric, 'chat completion') $$,
    'the ledger row is a signed deduction with the balance after it'
);
select is(
    (select user_id from row_),
    (select id from public.users where clerk_user_id = 'user_member'),
    'the row names the spender'
);
select is((select seat_id from row_), tests.seat_id('org_acme', 'user_member'), 'and their seat');
select is(
    (select organization_subscription_id from row_),
    (select id from public.organization_subscriptions where stripe_subscription_id = 'sub_acme'),
    'and the subscription whose pool paid'
);
select is(
    (select subscription_period_start from row_), '2026-03-01 00:00:00+00'::timestamptz,
    'and the billing period it was spent in'
);
select is(
    (select metadata - 'context' - 'clerk_user_id' from row_),
    (select to_jsonb(public.resolve_org_attribution('user_member', 'org_acme'))),
    'metadata carries the same attribution a token gets'
);
select is(
    (select metadata ->> 'clerk_user_id' from row_), 'user_member',
    'metadata names the Clerk user'
);
select is(
    (select metadata -> 'context' from row_), '{"model": "gpt", "tokens": 1200}'::jsonb,
    'the caller''s context is stored under context'
);

-- The caller cannot overwrite attribution keys through p_context.
select tests.act_as_service_role();
create temp table sneaky on commit drop as
select * from public.deduct_credits_pooled(
        'user_member', 1, 'sneaky', 'org_acme', null,
        '{"pool": "personal", "organization_id": "00000000-0000-0000-0000-000000000000", "seat_role": "owner"}'
    );
select tests.reset_role();
select results_eq(
    $$ select t.metadata ->> 'pool', t.metadata ->> 'seat_role', t.metadata -> 'context' ->> 'pool'
       from public.credit_transactions as t where t.id = (select transaction_id from sneaky) $$,
    $$ values ('organization', 'member', 'personal') $$,
    'context keys stay under context and never overwrite the attribution'
);

select is(
    (select balance from sneaky), 86.5::numeric,
    'consecutive deductions see each other'
);

-- Exactly the balance is fine; one unit more is not.
select tests.act_as_service_role();
select results_eq(
    $$ select ok, balance from public.deduct_credits_pooled('user_member', 86.5, 'all of it', 'org_acme') $$,
    $$ values (true, 0::numeric) $$,
    'the pool can be spent down to exactly zero'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_member', 0.0001, 'one more', 'org_acme') $$,
    $$ values (false, 'insufficient_credits') $$,
    'and not below'
);
select tests.reset_role();

select * from finish();
rollback;

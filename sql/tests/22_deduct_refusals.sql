-- Every business refusal is a result (ok = false, reason), never an error,
-- and writes nothing: no ledger row, no balance change.
begin;
select plan(15);

select tests.create_org('org_acme', 'Acme');
select tests.create_subscription('org_acme', 'active', 10);
select tests.create_user('user_member', p_personal_credits => 50);
select tests.create_seat('org_acme', 'user_member', 'member', 'active');
select tests.create_seat('org_acme', 'user_pending', 'member', 'pending');
select tests.create_seat('org_acme', 'user_suspended', 'admin', 'suspended');
select tests.create_seat('org_acme', 'user_revoked', 'owner', 'revoked');
select tests.create_user('user_outsider', p_personal_credits => 50);
select tests.create_org('org_nosub', 'No Subscription');
select tests.create_seat('org_nosub', 'user_member', 'member', 'active');
select tests.create_org('org_lapsed', 'Lapsed');
select tests.create_subscription('org_lapsed', 'canceled', 10);
select tests.create_seat('org_lapsed', 'user_member', 'member', 'active');

create temp table before_ on commit drop as
select
    tests.ledger_count() as ledger_rows,
    (select sum(credits_balance) from public.users) as personal,
    (select sum(credits_balance) from public.organization_subscriptions) as pooled;

select tests.act_as_service_role();

select results_eq(
    $$ select ok, pool, reason, transaction_id, amount, balance, replayed
       from public.deduct_credits_pooled('user_member', 10.0001, 'too much', 'org_acme') $$,
    $$ values (false, 'organization', 'insufficient_credits', null::uuid, null::numeric, 10::numeric, false) $$,
    'insufficient_credits: more than the pool holds'
);
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_outsider', 1, 'x', 'org_acme') $$,
    $$ values (false, 'organization', 'no_active_seat') $$,
    'no_active_seat: a user without a seat'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_pending', 1, 'x', 'org_acme') $$,
    $$ values (false, 'no_active_seat') $$,
    'no_active_seat: a pending seat'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_suspended', 1, 'x', 'org_acme') $$,
    $$ values (false, 'no_active_seat') $$,
    'no_active_seat: a suspended seat (whatever its role)'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_revoked', 1, 'x', 'org_acme') $$,
    $$ values (false, 'no_active_seat') $$,
    'no_active_seat: a revoked seat (even an owner''s)'
);
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_member', 1, 'x', 'org_nosub') $$,
    $$ values (false, 'organization', 'no_active_subscription') $$,
    'no_active_subscription: the org has no current subscription'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_member', 1, 'x', 'org_lapsed') $$,
    $$ values (false, 'no_active_subscription') $$,
    'no_active_subscription: the current subscription is canceled (its credits stay put)'
);
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_nobody', 1, 'x', 'org_acme') $$,
    $$ values (false, 'organization', 'unknown_user') $$,
    'unknown_user: in the org pool'
);
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_nobody', 1, 'x') $$,
    $$ values (false, 'personal', 'unknown_user') $$,
    'unknown_user: for personal credits'
);
select results_eq(
    $$ select ok, pool, reason from public.deduct_credits_pooled('user_member', 1, 'x', 'org_nowhere') $$,
    $$ values (false, 'organization', 'unknown_organization') $$,
    'unknown_organization: an org id the database does not know'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_member', 1, 'x', '') $$,
    $$ values (false, 'unknown_organization') $$,
    'unknown_organization: an empty org id is a named (unknown) org, never personal credits'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled(
           'user_outsider', 1, 'x', 'org_acme', 'key-refused-1') $$,
    $$ values (false, 'no_active_seat') $$,
    'a refusal with an idempotency key is still a refusal'
);

select tests.reset_role();

select results_eq(
    $$ select tests.ledger_count(),
              (select sum(credits_balance) from public.users),
              (select sum(credits_balance) from public.organization_subscriptions) $$,
    $$ select ledger_rows, personal, pooled from before_ $$,
    'refusals wrote nothing: same ledger, same balances'
);

-- A refused key is not used up: the same key can succeed later.
select tests.create_seat('org_acme', 'user_outsider', 'member', 'active');
select tests.act_as_service_role();
select results_eq(
    $$ select ok, replayed from public.deduct_credits_pooled(
           'user_outsider', 1, 'x', 'org_acme', 'key-refused-1') $$,
    $$ values (true, false) $$,
    'a key used only by a refusal is free: the retry after seating the user succeeds'
);
select tests.reset_role();
select is(tests.pool_balance('org_acme'), 9::numeric, 'and deducts once');

select * from finish();
rollback;

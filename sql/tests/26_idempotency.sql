-- C4: a repeated idempotency key with the same arguments returns the first
-- result (replayed = true) and moves nothing; the same key with other
-- arguments is an error (SQLSTATE 23505). Keys are scoped per spender and pool;
-- grants and refunds have their own namespace per pool owner (L7).
begin;
select plan(19);

select tests.create_org('org_acme', 'Acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_a', 'member', 'active');
select tests.create_seat('org_acme', 'user_b', 'member', 'active');
select tests.create_org('org_other', 'Other');
select tests.create_subscription('org_other', 'active', 100);
select tests.create_seat('org_other', 'user_a', 'member', 'active');
select public.grant_credits(30, 'personal', 'user_a');

select tests.act_as_service_role();
create temp table first_ on commit drop as
select * from public.deduct_credits_pooled('user_a', 5, 'chat', 'org_acme', 'req-1', '{"n": 1}');
create temp table again on commit drop as
select * from public.deduct_credits_pooled('user_a', 5, 'chat', 'org_acme', 'req-1', '{"n": 1}');
select tests.reset_role();

select results_eq(
    $$ select ok, replayed, balance from first_ $$,
    $$ values (true, false, 95::numeric) $$,
    'the first request deducts'
);
select results_eq(
    $$ select ok, pool, reason, transaction_id, amount, balance from again $$,
    $$ select ok, pool, reason, transaction_id, amount, balance from first_ $$,
    'the repeat returns the first result ...'
);
select is((select replayed from again), true, '... flagged as replayed');
select is(tests.pool_balance('org_acme'), 95::numeric, 'and deducts nothing more');
select is(
    (select count(*)::int from public.credit_transactions where idempotency_key = 'req-1'), 1,
    'one ledger row for the key'
);

select tests.act_as_service_role();
select results_eq(
    $$ select ok, replayed, balance
       from public.deduct_credits_pooled('user_a', 5.0000, 'chat', 'org_acme', 'req-1', '{"n": 1}') $$,
    $$ values (true, true, 95::numeric) $$,
    'the same amount written differently (5.0000) is the same request'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_a', 6, 'chat', 'org_acme', 'req-1', '{"n": 1}') $$,
    '23505', 'p_idempotency_key was already used with different arguments',
    'same key, other amount: error'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_a', 5, 'other', 'org_acme', 'req-1', '{"n": 1}') $$,
    '23505', 'p_idempotency_key was already used with different arguments',
    'same key, other description: error'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_a', 5, 'chat', 'org_acme', 'req-1', '{"n": 2}') $$,
    '23505', 'p_idempotency_key was already used with different arguments',
    'same key, other context: error'
);
select results_eq(
    $$ select ok, replayed from public.deduct_credits_pooled('user_b', 6, 'chat', 'org_acme', 'req-1', '{"n": 9}') $$,
    $$ values (true, false) $$,
    'L7: same key in the same org pool, other member: another request (no 409, no replay, nothing learned)'
);
select results_eq(
    $$ select ok, replayed from public.grant_credits(
           5, 'chat', p_clerk_org_id => 'org_acme', p_idempotency_key => 'req-1', p_context => '{"n": 1}'
       ) $$,
    $$ values (true, false) $$,
    'L7: a grant with a key a member used for a deduction is a grant (own namespace)'
);
select results_eq(
    $$ select ok, replayed from public.deduct_credits_pooled('user_a', 5, 'chat', 'org_other', 'req-1', '{"n": 1}') $$,
    $$ values (true, false) $$,
    'the same key in another org''s pool is another request (keys are scoped per pool owner)'
);
select results_eq(
    $$ select ok, pool, replayed from public.deduct_credits_pooled('user_a', 5, 'chat', null, 'req-1', '{"n": 1}') $$,
    $$ values (true, 'personal', false) $$,
    'and in the user''s personal credits too'
);
select results_eq(
    $$ select ok, pool, replayed from public.deduct_credits_pooled('user_a', 5, 'chat', null, 'req-1', '{"n": 1}') $$,
    $$ values (true, 'personal', true) $$,
    'personal keys replay like pool keys'
);
select tests.reset_role();
select is(tests.personal_balance('user_a'), 25::numeric, 'the personal replay deducted once');

-- A replay is honoured even after the seat was revoked: it reports what happened.
select public.set_seat_status('org_acme', 'user_a', 'revoked');
select tests.act_as_service_role();
select results_eq(
    $$ select ok, replayed, transaction_id from public.deduct_credits_pooled(
           'user_a', 5, 'chat', 'org_acme', 'req-1', '{"n": 1}') $$,
    $$ select true, true, transaction_id from first_ $$,
    'a retry of a deduction that succeeded replays it, even after the seat was revoked'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_a', 5, 'chat', 'org_acme', 'req-2') $$,
    $$ values (false, 'no_active_seat') $$,
    'while a new key is refused'
);

-- Grants replay too.
select results_eq(
    $$ select ok, replayed, balance from public.grant_credits(10, 'top-up', p_clerk_org_id => 'org_other',
                                                           p_idempotency_key => 'invoice-42') $$,
    $$ values (true, false, 105::numeric) $$,
    'a grant with a key credits once ...'
);
select results_eq(
    $$ select ok, replayed, balance from public.grant_credits(10, 'top-up', p_clerk_org_id => 'org_other',
                                                           p_idempotency_key => 'invoice-42') $$,
    $$ values (true, true, 105::numeric) $$,
    '... and its repeat replays (a retried Stripe webhook grants once)'
);
select tests.reset_role();

select * from finish();
rollback;

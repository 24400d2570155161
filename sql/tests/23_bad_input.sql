-- C5: bad input is an error with SQLSTATE 22023 and a message naming the
-- argument, for deduct_credits_pooled, grant_credits and refund_credits; and
-- nothing is written.
begin;
select plan(39);

select tests.create_org('org_acme', 'Acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_user('user_member', p_personal_credits => 100);
select tests.create_seat('org_acme', 'user_member', 'member', 'active');

select tests.act_as_service_role();
create temp table spent on commit drop as
select * from public.deduct_credits_pooled('user_member', 1, 'to refund', 'org_acme');
create temp table before_ on commit drop as
select
    (select count(*) from public.credit_transactions) as ledger_rows,
    (select sum(credits_balance) from public.users) as personal,
    (select sum(credits_balance) from public.organization_subscriptions) as pooled;

-- deduct_credits_pooled: p_amount
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 0, 'x', 'org_acme') $$,
    '22023', 'p_amount must be greater than 0 (got 0)', 'deduct: amount 0'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', -5, 'x', 'org_acme') $$,
    '22023', 'p_amount must be greater than 0 (got -5)', 'deduct: negative amount'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 'NaN', 'x', 'org_acme') $$,
    '22023', 'p_amount must be a number, not NaN', 'deduct: NaN'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 'Infinity', 'x', 'org_acme') $$,
    '22023', 'p_amount must be finite', 'deduct: Infinity'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', '-Infinity', 'x') $$,
    '22023', 'p_amount must be finite', 'deduct: -Infinity'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1000000000000.0001, 'x', 'org_acme') $$,
    '22023', 'p_amount must not exceed 1000000000000 (got 1000000000000.0001)',
    'deduct: above the maximum of 1e12'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1.00001, 'x', 'org_acme') $$,
    '22023', 'p_amount must have at most 4 decimal places (got 1.00001)',
    'deduct: more decimals than the ledger''s scale'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', null, 'x', 'org_acme') $$,
    '22023', 'p_amount must not be null', 'deduct: null amount'
);
select lives_ok(
    $$ select public.deduct_credits_pooled('user_member', 1.50000, 'trailing zeros', 'org_acme', 'tz') $$,
    'deduct: trailing zeros beyond the scale are not extra decimals'
);

-- deduct_credits_pooled: p_description, p_idempotency_key, p_context, p_clerk_user_id
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, '', 'org_acme') $$,
    '22023', 'p_description must not be empty', 'deduct: empty description'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, '   ', 'org_acme') $$,
    '22023', 'p_description must not be empty', 'deduct: blank description'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, E'\t\n ', 'org_acme') $$,
    '22023', 'p_description must not be empty', 'deduct: description of tabs and newlines'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, null, 'org_acme') $$,
    '22023', 'p_description must not be empty', 'deduct: null description'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, repeat('d', 501), 'org_acme') $$,
    '22023', 'p_description must be at most 500 characters', 'deduct: description over 500 characters'
);
select lives_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, repeat('d', 500), 'org_acme', 'd500') $$,
    'deduct: a description of exactly 500 characters is fine'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, 'x', 'org_acme', repeat('k', 201)) $$,
    '22023', 'p_idempotency_key must be at most 200 characters', 'deduct: idempotency key over 200 characters'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, 'x', 'org_acme', '') $$,
    '22023', 'p_idempotency_key must not be empty (pass null for none)', 'deduct: empty idempotency key'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, 'x', 'org_acme', null, '[1, 2]') $$,
    '22023', 'p_context must be a JSON object (got array)', 'deduct: context is an array'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, 'x', 'org_acme', null, '"text"') $$,
    '22023', 'p_context must be a JSON object (got string)', 'deduct: context is a string'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, 'x', 'org_acme', null, 'null'::jsonb) $$,
    '22023', 'p_context must be a JSON object (got null)', 'deduct: context is JSON null'
);
select throws_ok(
    $$ select public.deduct_credits_pooled('user_member', 1, 'x', 'org_acme', null,
           jsonb_build_object('blob', repeat('z', 8200))) $$,
    '22023', 'p_context must be at most 8192 bytes as JSON text', 'deduct: context over 8 KB'
);
select throws_ok(
    $$ select public.deduct_credits_pooled(null, 1, 'x', 'org_acme') $$,
    '22023', 'p_clerk_user_id must not be null', 'deduct: null user'
);

-- grant_credits
select throws_ok(
    $$ select public.grant_credits(0, 'x', p_clerk_org_id => 'org_acme') $$,
    '22023', 'p_amount must be greater than 0 (got 0)', 'grant: amount 0'
);
select throws_ok(
    $$ select public.grant_credits('NaN', 'x', p_clerk_org_id => 'org_acme') $$,
    '22023', 'p_amount must be a number, not NaN', 'grant: NaN'
);
select throws_ok(
    $$ select public.grant_credits('Infinity', 'x', p_clerk_user_id => 'user_member') $$,
    '22023', 'p_amount must be finite', 'grant: Infinity'
);
select throws_ok(
    $$ select public.grant_credits(10000000000000, 'x', p_clerk_user_id => 'user_member') $$,
    '22023', 'p_amount must not exceed 1000000000000 (got 10000000000000)', 'grant: above the maximum'
);
select throws_ok(
    $$ select public.grant_credits(0.12345, 'x', p_clerk_user_id => 'user_member') $$,
    '22023', 'p_amount must have at most 4 decimal places (got 0.12345)', 'grant: too many decimals'
);
select throws_ok(
    $$ select public.grant_credits(1, '', p_clerk_user_id => 'user_member') $$,
    '22023', 'p_description must not be empty', 'grant: empty description'
);
select throws_ok(
    $$ select public.grant_credits(1, 'x', p_clerk_user_id => 'user_member', p_context => '[]') $$,
    '22023', 'p_context must be a JSON object (got array)', 'grant: context not an object'
);
select throws_ok(
    $$ select public.grant_credits(1, 'x', 'user_member', 'org_acme') $$,
    '22023', 'exactly one of p_clerk_user_id and p_clerk_org_id must be given', 'grant: both pools named'
);
select throws_ok(
    $$ select public.grant_credits(1, 'x') $$,
    '22023', 'exactly one of p_clerk_user_id and p_clerk_org_id must be given', 'grant: no pool named'
);

-- refund_credits
select throws_ok(
    $$ select public.refund_credits(null) $$,
    '22023', 'p_transaction_id must not be null', 'refund: no transaction'
);
select throws_ok(
    $$ select public.refund_credits((select transaction_id from spent), 0) $$,
    '22023', 'p_amount must be greater than 0 (got 0)', 'refund: amount 0'
);
select throws_ok(
    $$ select public.refund_credits((select transaction_id from spent), 'NaN') $$,
    '22023', 'p_amount must be a number, not NaN', 'refund: NaN'
);
select throws_ok(
    $$ select public.refund_credits((select transaction_id from spent), 0.00001) $$,
    '22023', 'p_amount must have at most 4 decimal places (got 0.00001)', 'refund: too many decimals'
);
select throws_ok(
    $$ select public.refund_credits((select transaction_id from spent), 1, '') $$,
    '22023', 'p_description must not be empty', 'refund: empty description'
);
select throws_ok(
    $$ select public.refund_credits((select transaction_id from spent), 1, null, repeat('k', 201)) $$,
    '22023', 'p_idempotency_key must be at most 200 characters', 'refund: idempotency key over 200 characters'
);
select throws_ok(
    $$ select public.refund_credits((select transaction_id from spent), 1, null, null, '1') $$,
    '22023', 'p_context must be a JSON object (got number)', 'refund: context not an object'
);

select tests.reset_role();
select results_eq(
    $$ select count(*) - 2,
              (select sum(credits_balance) from public.users),
              (select sum(credits_balance) from public.organization_subscriptions) + 2.5
       from public.credit_transactions $$,
    $$ select ledger_rows, personal, pooled from before_ $$,
    'bad input wrote nothing (only the two valid deductions above did)'
);

select * from finish();
rollback;

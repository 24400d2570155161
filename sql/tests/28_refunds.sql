-- Refunds point at the deduction they reverse, credit the pool it came from,
-- and never add up to more than the deduction.
begin;
select plan(17);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'active', 100, 'sub_old');
select tests.create_seat('org_acme', 'user_member', 'member', 'active');
select public.grant_credits(20, 'personal', 'user_member');

select tests.act_as_service_role();
create temp table spent on commit drop as
select * from public.deduct_credits_pooled('user_member', 10, 'long job', 'org_acme', 'job-1', '{"job": 1}');
create temp table spent_personal on commit drop as
select * from public.deduct_credits_pooled('user_member', 4, 'personal job');

create temp table partial on commit drop as
select * from public.refund_credits((select transaction_id from spent), 3, null, 'refund-1', '{"why": "timeout"}');
select tests.reset_role();

select results_eq(
    $$ select ok, pool, reason, amount, balance, replayed from partial $$,
    $$ values (true, 'organization', null::text, 3::numeric, 93::numeric, false) $$,
    'a partial refund gives credits back to the pool'
);
select results_eq(
    $$ select kind::text, amount, refund_of_transaction_id, seat_id, description
       from public.credit_transactions where id = (select transaction_id from partial) $$,
    $$ select 'refund', 3::numeric, transaction_id, tests.seat_id('org_acme', 'user_member'),
              'Refund: long job' from spent $$,
    'the refund row points at the deduction and keeps its seat; description defaults from it'
);
select results_eq(
    $$ select metadata ->> 'refund_of', metadata ->> 'seat_role', metadata -> 'context'
       from public.credit_transactions where id = (select transaction_id from partial) $$,
    $$ select transaction_id::text, 'member', '{"why": "timeout"}'::jsonb from spent $$,
    'its metadata keeps the attribution, names the original and has its own context'
);

select tests.act_as_service_role();
select results_eq(
    $$ select ok, reason from public.refund_credits((select transaction_id from spent), 7.0001) $$,
    $$ values (false, 'refund_exceeds_remaining') $$,
    'a refund may not exceed what is left of the original (7 of 10)'
);
select results_eq(
    $$ select ok, replayed, balance
       from public.refund_credits((select transaction_id from spent), 3, null, 'refund-1', '{"why": "timeout"}') $$,
    $$ values (true, true, 93::numeric) $$,
    'a repeated refund key replays'
);
select throws_ok(
    $$ select public.refund_credits((select transaction_id from spent), 4, null, 'refund-1', '{"why": "timeout"}') $$,
    '23505', 'p_idempotency_key was already used with different arguments',
    'a refund key reused with another amount is an error'
);
select results_eq(
    $$ select ok, amount, balance from public.refund_credits((select transaction_id from spent)) $$,
    $$ values (true, 7::numeric, 100::numeric) $$,
    'without an amount the rest is refunded'
);
select results_eq(
    $$ select ok, pool, reason from public.refund_credits((select transaction_id from spent)) $$,
    $$ values (false, 'organization', 'refund_exceeds_remaining') $$,
    'a fully refunded deduction refunds nothing more'
);
select results_eq(
    $$ select ok, reason from public.refund_credits((select transaction_id from spent), 0.0001) $$,
    $$ values (false, 'refund_exceeds_remaining') $$,
    'not even the smallest amount'
);
select results_eq(
    $$ select ok, reason from public.refund_credits((select transaction_id from partial)) $$,
    $$ values (false, 'not_refundable') $$,
    'a refund cannot be refunded'
);
select results_eq(
    $$ select ok, reason from public.refund_credits(
           (select id from public.credit_transactions where kind = 'grant' limit 1)) $$,
    $$ values (false, 'not_refundable') $$,
    'a grant cannot be refunded'
);
select results_eq(
    $$ select ok, pool, reason from public.refund_credits('00000000-0000-0000-0000-000000000000') $$,
    $$ values (false, null::text, 'unknown_transaction') $$,
    'an unknown transaction is refused'
);
select results_eq(
    $$ select ok, pool, amount, balance from public.refund_credits((select transaction_id from spent_personal), 4) $$,
    $$ values (true, 'personal', 4::numeric, 20::numeric) $$,
    'a personal deduction is refunded to personal credits'
);
select tests.reset_role();

-- The original subscription's pool gets the refund even after a new one became current.
select tests.act_as_service_role();
create temp table spent2 on commit drop as
select * from public.deduct_credits_pooled('user_member', 50, 'big job', 'org_acme');
select tests.reset_role();
select tests.create_subscription('org_acme', 'active', 0, 'sub_new');
select tests.act_as_service_role();
select results_eq(
    $$ select ok, balance from public.refund_credits((select transaction_id from spent2), 50) $$,
    $$ values (true, 100::numeric) $$,
    'a refund goes back to the subscription the deduction came from'
);
select tests.reset_role();
select is(tests.pool_balance('org_acme'), 0::numeric, 'not to the new current one');

select is(
    (
        select sum(t.amount) from public.credit_transactions as t
        where t.refund_of_transaction_id = (select s.transaction_id from spent as s)
    ),
    10::numeric,
    'refunds of one deduction add up to at most its amount'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'balances match the ledger after refunds'
);

select * from finish();
rollback;

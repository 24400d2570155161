-- H1: holds. authorize_credits reserves on the pool its arguments name (the
-- same attribution, seat and subscription checks as a deduction; refused when
-- the AVAILABLE balance, credits_balance - held, is short); capture_credits
-- turns a live hold into one ledger deduction of at most the held amount and
-- releases the rest; void_hold releases it all; an expired hold is swept by
-- the next authorize or deduction that needs it. Refusals write nothing.
begin;
select plan(89);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_alice', 'member', 'active');
select tests.create_seat('org_acme', 'user_bob', 'member', 'active');
-- H1's own rules, holds of most of a pool two seats share: H4's bounds (a
-- seat's live holds at most half the pool, a hold at most 15 minutes) are
-- lifted here and tested in 32_holds_bounded.sql.
update private.hold_limits set max_held_share = 1, max_ttl = interval '1 hour';
select tests.create_user('user_solo', p_personal_credits => 20);
select public.grant_credits(50, 'personal', 'user_alice');

create function pg_temp.pool_held(p_clerk_org_id text)
returns numeric
language sql
as $$
    select s.held
    from public.organization_subscriptions as s
    inner join public.organizations as o on s.organization_id = o.id
    where o.clerk_org_id = p_clerk_org_id and s.is_current
$$;

create temp table h1 on commit drop as
select * from public.authorize_credits('user_alice', 30, 'chat stream', 'org_acme', null, '{"model": "m1"}');

-- Authorize ----------------------------------------------------------------------

select results_eq(
    $$ select ok, pool, reason, amount, available, replayed from h1 $$,
    $$ values (true, 'organization', null::text, 30::numeric, 70::numeric, false) $$,
    'H1: authorize reserves 30 of 100 on the org pool; 70 stay available'
);
select is((select expires_at from h1), now() + interval '5 minutes', 'the default expiry is 5 minutes');
select is(tests.pool_balance('org_acme'), 100::numeric, 'authorize moves no credit ...');
select is(
    pg_temp.pool_held('org_acme'),
    30::numeric, '... it raises the pool''s held'
);
select is(
    (select count(*)::int from public.credit_transactions where kind = 'deduction'), 0,
    '... and writes no ledger row'
);
select results_eq(
    $$ select pool::text, state, amount, seat_id, metadata ->> 'clerk_org_id', metadata -> 'context'
       from public.credit_holds where id = (select h1.hold_id from h1) $$,
    $$ values ('organization', 'held', 30::numeric(20, 4), tests.seat_id('org_acme', 'user_alice'),
               'org_acme', '{"model": "m1"}'::jsonb) $$,
    'the hold row records the pool, the seat and the attribution'
);
select results_eq(
    $$ select ok, reason, available
       from public.authorize_credits('user_bob', 71, 'too much', 'org_acme') $$,
    $$ values (false, 'insufficient_credits', 70::numeric) $$,
    'H1: a hold beyond the available balance (not the balance) is refused, with the available'
);
select results_eq(
    $$ select ok, reason, available
       from public.authorize_credits('user_alice', 75, 'org short', 'org_acme') $$,
    $$ values (false, 'insufficient_credits', 70::numeric) $$,
    'C2: never personal credits when an org is named (alice has 50 personal)'
);
select is(tests.personal_balance('user_alice'), 50::numeric, 'personal credits untouched');
select is(
    (select count(*)::int from public.credit_holds), 1, 'refusals leave no hold behind'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_bob', 71, 'deduct past held', 'org_acme') $$,
    $$ values (false, 'insufficient_credits') $$,
    'H1: a deduction cannot take what a hold reserved (balance - held >= amount)'
);
select results_eq(
    $$ select ok, balance from public.deduct_credits_pooled('user_bob', 70, 'deduct the rest', 'org_acme') $$,
    $$ values (true, 30::numeric) $$,
    'a deduction of exactly the available balance succeeds'
);

-- Capture --------------------------------------------------------------------------

select results_eq(
    $$ select ok, reason from public.capture_credits((select h1.hold_id from h1), 'user_alice', 31) $$,
    $$ values (false, 'amount_exceeds_hold') $$,
    'H1: capture more than held: amount_exceeds_hold'
);
select results_eq(
    $$ select ok, reason from public.capture_credits((select h1.hold_id from h1), 'user_bob', 10) $$,
    $$ values (false, 'hold_not_yours') $$,
    'another member cannot capture alice''s hold: hold_not_yours'
);
select results_eq(
    $$ select ok, reason from public.capture_credits(gen_random_uuid(), 'user_alice', 10) $$,
    $$ values (false, 'hold_not_found') $$,
    'an unknown hold: hold_not_found'
);
select is(tests.pool_balance('org_acme'), 30::numeric, 'refused captures move nothing');

create temp table c1 on commit drop as
select * from public.capture_credits((select h1.hold_id from h1), 'user_alice', 12.5, '{"tokens": 1250}');

select results_eq(
    $$ select ok, pool, reason, amount, balance, replayed from c1 $$,
    $$ values (true, 'organization', null::text, 12.5::numeric, 17.5::numeric, false) $$,
    'H1: capture for less: one deduction of 12.5, balance 30 -> 17.5'
);
select is(
    pg_temp.pool_held('org_acme'),
    0::numeric, 'the rest of the hold (17.5) is released: held back to 0'
);
select results_eq(
    $$ select kind::text, amount, balance_after, seat_id, description, idempotency_key
       from public.credit_transactions where id = (select transaction_id from c1) $$,
    $$ values ('deduction', -12.5::numeric(20, 4), 17.5::numeric(20, 4),
               tests.seat_id('org_acme', 'user_alice'), 'chat stream', null::text) $$,
    'the ledger row: a deduction under alice''s seat, balance_after = the balance after the capture'
);
select results_eq(
    $$ select metadata ->> 'hold_id', metadata ->> 'clerk_user_id', metadata ->> 'organization_name',
              metadata ->> 'stripe_customer_id', metadata ->> 'seat_role', metadata -> 'context'
       from public.credit_transactions where id = (select transaction_id from c1) $$,
    $$ values ((select h1.hold_id from h1)::text, 'user_alice', 'Acme', 'cus_acme', 'member',
               '{"model": "m1", "tokens": 1250}'::jsonb) $$,
    'its metadata: the full attribution, the hold id, the contexts of authorize and capture'
);
select results_eq(
    $$ select ok, transaction_id, amount, balance, replayed
       from public.capture_credits((select h1.hold_id from h1), 'user_alice', 12.5, '{"tokens": 1250}') $$,
    $$ select true, transaction_id, amount, balance, true from c1 $$,
    'H1: the same capture repeated (a retry after a lost answer) replays the first result'
);
select results_eq(
    $$ select ok, reason from public.capture_credits((select h1.hold_id from h1), 'user_alice', 5) $$,
    $$ values (false, 'hold_already_captured') $$,
    'H1: capture twice with another amount: hold_already_captured'
);
select results_eq(
    $$ select ok, reason
       from public.capture_credits((select h1.hold_id from h1), 'user_alice', 12.5, '{"tokens": 9}') $$,
    $$ values (false, 'hold_already_captured') $$,
    'H1: capture twice with the same amount and another context: hold_already_captured'
);
select throws_ok(
    $$ update public.credit_holds set released_at = null where id = (select h1.hold_id from h1) $$,
    '23514', null,
    'a finished hold keeps its released_at: "released_at is null" is state held (credit_holds_released)'
);
select results_eq(
    $$ select ok, reason from public.void_hold((select h1.hold_id from h1), 'user_alice') $$,
    $$ values (false, 'hold_already_captured') $$,
    'void after capture: hold_already_captured'
);
select is(tests.pool_balance('org_acme'), 17.5::numeric, 'the repeats moved nothing');
select is(
    (select count(*)::int from public.credit_transactions where metadata ? 'hold_id'), 1,
    'one ledger row for the hold'
);

-- Void -----------------------------------------------------------------------------

create temp table h2 on commit drop as
select * from public.authorize_credits('user_alice', 10, 'to be voided', 'org_acme');

select results_eq(
    $$ select ok, reason from public.void_hold((select h2.hold_id from h2), 'user_bob') $$,
    $$ values (false, 'hold_not_yours') $$,
    'another member cannot void alice''s hold'
);
select results_eq(
    $$ select ok, amount, available, replayed from public.void_hold((select h2.hold_id from h2), 'user_alice') $$,
    $$ values (true, 10::numeric, 17.5::numeric, false) $$,
    'H1: void releases the whole hold'
);
select results_eq(
    $$ select ok, replayed from public.void_hold((select h2.hold_id from h2), 'user_alice') $$,
    $$ values (true, true) $$,
    'a repeated void replays'
);
select results_eq(
    $$ select ok, reason from public.capture_credits((select h2.hold_id from h2), 'user_alice', 1) $$,
    $$ values (false, 'hold_voided') $$,
    'H1: capture after void: hold_voided'
);
select results_eq(
    $$ select ok, reason from public.void_hold(gen_random_uuid(), 'user_alice') $$,
    $$ values (false, 'hold_not_found') $$,
    'void of an unknown hold: hold_not_found'
);
select is(tests.pool_balance('org_acme'), 17.5::numeric, 'a voided hold moves no credit');

-- Expiry -----------------------------------------------------------------------------

create temp table h3 on commit drop as
select * from public.authorize_credits('user_alice', 15, 'to expire', 'org_acme', null, '{}', '10 seconds');

select is((select expires_at from h3), now() + interval '10 seconds', 'p_ttl sets the expiry');
update public.credit_holds set expires_at = now() - interval '1 second'
where id = (select h3.hold_id from h3);

select results_eq(
    $$ select ok, reason from public.capture_credits((select h3.hold_id from h3), 'user_alice', 1) $$,
    $$ values (false, 'hold_expired') $$,
    'H1: capture after expiry: hold_expired'
);
select is(tests.pool_balance('org_acme'), 17.5::numeric, 'nothing written by it');
select is(
    pg_temp.pool_held('org_acme'),
    15::numeric, 'an expired hold still counts in held until swept (lazily)'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'credit_consistency_check is empty with an expired, unswept hold (held = sum of state held)'
);
create temp table h4 on commit drop as
select * from public.authorize_credits('user_bob', 10, 'needs the expired hold''s credits', 'org_acme');
select results_eq(
    $$ select ok, available from h4 $$,
    $$ values (true, 7.5::numeric) $$,
    'H1: an authorize that needs them sweeps the expired hold and succeeds (17.5 - 10)'
);
select is(
    (select state from public.credit_holds where id = (select h3.hold_id from h3)), 'expired',
    'the swept hold is expired'
);
select results_eq(
    $$ select ok, reason from public.void_hold((select h3.hold_id from h3), 'user_alice') $$,
    $$ values (false, 'hold_expired') $$,
    'void of a swept hold: hold_expired (already released)'
);
select lives_ok(
    $$ select public.void_hold((select h4.hold_id from h4), 'user_bob') $$, 'bob voids his hold'
);

create temp table h5 on commit drop as
select * from public.authorize_credits('user_bob', 17.5, 'all of it', 'org_acme');
update public.credit_holds set expires_at = now() - interval '1 second'
where id = (select h5.hold_id from h5);
select results_eq(
    $$ select ok, balance from public.deduct_credits_pooled('user_alice', 5, 'after expiry', 'org_acme') $$,
    $$ values (true, 12.5::numeric) $$,
    'H1: a deduction refused only because of an expired hold sweeps it and succeeds'
);
select is(
    (select state from public.credit_holds where id = (select h5.hold_id from h5)), 'expired',
    'the deduction swept the hold'
);
create temp table h6 on commit drop as
select * from public.authorize_credits('user_bob', 12.5, 'all of it again', 'org_acme');
update public.credit_holds set expires_at = now() - interval '1 second'
where id = (select h6.hold_id from h6);
select results_eq(
    $$ select r.ok, r.reason, r.balance
       from public.deduct_credits_pooled_batch('org_acme', '[{"clerk_user_id": "user_alice", "amount": 2.5,
           "description": "batch after expiry"}, {"clerk_user_id": "user_alice", "amount": 20,
           "description": "too much"}]') as r $$,
    $$ values (true, null::text, 10::numeric), (false, 'insufficient_credits', 10::numeric) $$,
    'H1: the batch sweeps an expired hold too, and counts held for each element'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'credit_consistency_check empty after sweeps'
);

-- Seat and subscription -------------------------------------------------------------

create temp table h7 on commit drop as
select * from public.authorize_credits('user_alice', 4, 'seat revoked meanwhile', 'org_acme');
select lives_ok(
    $$ select public.set_seat_status('org_acme', 'user_alice', 'revoked') $$,
    'alice''s seat is revoked after authorize'
);
select results_eq(
    $$ select ok, reason from public.authorize_credits('user_alice', 1, 'new hold', 'org_acme') $$,
    $$ values (false, 'no_active_seat') $$,
    'a revoked seat cannot authorize: no_active_seat'
);
select results_eq(
    $$ select ok, amount, balance from public.capture_credits((select h7.hold_id from h7), 'user_alice', 4) $$,
    $$ values (true, 4::numeric, 6::numeric) $$,
    'H1: but its live hold is captured: the work was authorized and done'
);
update public.organization_subscriptions set status = 'past_due'
where organization_id = (select id from public.organizations where clerk_org_id = 'org_acme');
select results_eq(
    $$ select ok, reason from public.authorize_credits('user_bob', 1, 'unpaid', 'org_acme') $$,
    $$ values (false, 'no_active_subscription') $$,
    'a subscription that may not spend: no_active_subscription'
);
update public.organization_subscriptions set status = 'active'
where organization_id = (select id from public.organizations where clerk_org_id = 'org_acme');
select results_eq(
    $$ select ok, reason from public.authorize_credits('user_nobody', 1, 'x', 'org_acme') $$,
    $$ values (false, 'unknown_user') $$,
    'unknown user'
);
select results_eq(
    $$ select ok, reason from public.authorize_credits('user_bob', 1, 'x', 'org_nowhere') $$,
    $$ values (false, 'unknown_organization') $$,
    'unknown organization'
);
select results_eq(
    $$ select ok, pool, reason from public.authorize_credits('user_bob', 1, 'x') $$,
    $$ values (false, 'personal', 'insufficient_credits') $$,
    'without an org: the personal pool (bob has none)'
);

-- Personal pool --------------------------------------------------------------------

create temp table p1 on commit drop as
select * from public.authorize_credits('user_solo', 8, 'personal stream');
select results_eq(
    $$ select ok, pool, amount, available from p1 $$,
    $$ values (true, 'personal', 8::numeric, 12::numeric) $$,
    'H1: a personal hold: 8 of 20 reserved'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_solo', 13, 'past held') $$,
    $$ values (false, 'insufficient_credits') $$,
    'a personal deduction respects held'
);
select results_eq(
    $$ select ok, pool, amount, balance from public.capture_credits((select p1.hold_id from p1), 'user_solo', 3) $$,
    $$ values (true, 'personal', 3::numeric, 17::numeric) $$,
    'a personal capture for less'
);
select is((select held from public.users where clerk_user_id = 'user_solo'), 0::numeric, 'personal held released');

-- Idempotency --------------------------------------------------------------------------

create temp table k1 on commit drop as
select * from public.authorize_credits('user_bob', 2, 'keyed', 'org_acme', 'req-1');
select results_eq(
    $$ select ok, hold_id, amount, available, expires_at, true
       from public.authorize_credits('user_bob', 2, 'keyed', 'org_acme', 'req-1') $$,
    $$ select ok, hold_id, amount, available, expires_at, replayed = false from k1 $$,
    'H1: the same key and arguments replay the same hold ...'
);
select is(
    (select replayed from public.authorize_credits('user_bob', 2, 'keyed', 'org_acme', 'req-1')), true,
    '... flagged replayed'
);
select is(
    (select count(*)::int from public.credit_holds where idempotency_key = 'req-1'), 1,
    'one hold for the key'
);
select throws_ok(
    $$ select public.authorize_credits('user_bob', 3, 'keyed', 'org_acme', 'req-1') $$,
    '23505', 'p_idempotency_key was already used with different arguments',
    'the same key with another amount: 23505'
);
select results_eq(
    $$ select ok, replayed from public.authorize_credits('user_solo', 2, 'keyed', null, 'req-1') $$,
    $$ values (true, false) $$,
    'L7: the same key from another spender is another hold'
);
select results_eq(
    $$ select ok, replayed from public.deduct_credits_pooled('user_bob', 1, 'keyed', 'org_acme', 'req-1') $$,
    $$ values (true, false) $$,
    'a hold key never replays (nor blocks) a deduction: own namespace'
);

-- Bad input --------------------------------------------------------------------------

select throws_ok(
    $$ select public.authorize_credits('user_bob', 1, 'x', 'org_acme', null, '{}', '0 seconds') $$,
    '22023', null, 'p_ttl of 0: 22023'
);
select throws_ok(
    $$ select public.authorize_credits('user_bob', 1, 'x', 'org_acme', null, '{}', '61 minutes') $$,
    '22023', 'p_ttl must be greater than 0 and at most 1 hour (got 01:01:00)', 'p_ttl above 1 hour: 22023'
);
select lives_ok(
    $$ select public.authorize_credits('user_bob', 1, 'x', 'org_acme', null, '{}', '1 hour') $$,
    'p_ttl of exactly 1 hour is accepted'
);
select throws_ok(
    $$ select public.authorize_credits('user_bob', -1, 'x', 'org_acme') $$,
    '22023', 'p_amount must be greater than 0 (got -1)', 'a negative amount: 22023'
);
select throws_ok(
    $$ select public.authorize_credits(null, 1, 'x', 'org_acme') $$,
    '22023', 'p_clerk_user_id must not be null', 'no user: 22023'
);
select throws_ok(
    $$ select public.capture_credits(null, 'user_bob', 1) $$,
    '22023', 'p_hold_id must not be null', 'capture without a hold id: 22023'
);
select throws_ok(
    $$ select public.capture_credits((select k1.hold_id from k1), 'user_bob', 0) $$,
    '22023', 'p_amount must be greater than 0 (got 0)', 'a capture of 0 is bad input (void instead)'
);
select throws_ok(
    $$ select public.capture_credits((select k1.hold_id from k1), 'user_bob', 1, '[]') $$,
    '22023', 'p_context must be a JSON object (got array)', 'a capture context that is not an object: 22023'
);
select throws_ok(
    $$ select public.void_hold((select k1.hold_id from k1), null) $$,
    '22023', 'p_clerk_user_id must not be null', 'void without a user: 22023'
);

-- Consistency and purge ---------------------------------------------------------------

select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'H1: credit_consistency_check is empty after every kind of hold'
);
update public.organization_subscriptions set held = held + 1
where organization_id = (select id from public.organizations where clerk_org_id = 'org_acme');
select results_eq(
    $$ select pool, balance - ledger_sum from public.credit_consistency_check() $$,
    $$ values ('organization:held', 1::numeric) $$,
    'a held that differs from its holds is reported (organization:held)'
);
update public.organization_subscriptions set held = held - 1
where organization_id = (select id from public.organizations where clerk_org_id = 'org_acme');

update public.credit_holds set expires_at = now() - interval '1 second'
where id = (select k1.hold_id from k1);
update public.credit_holds set released_at = now() - interval '2 days'
where id in ((select h1.hold_id from h1), (select h2.hold_id from h2));
select is(public.purge_expired_holds(), 2, 'purge deletes the holds finished more than a day ago');
select is(
    (select state from public.credit_holds where id = (select k1.hold_id from k1)), 'expired',
    'and sweeps expired live holds'
);
select is(
    (
        select count(*)::int from public.credit_holds
        where id in ((select h1.hold_id from h1), (select h2.hold_id from h2))
    ),
    0,
    'the old holds are gone'
);
select throws_ok(
    $$ select public.purge_expired_holds('-1 day') $$, '22023', null, 'a negative retention: 22023'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'credit_consistency_check empty after the purge'
);

-- Privileges ---------------------------------------------------------------------------

select
    function_privs_are(
        'public', f.name, f.args, r.role_name,
        case when r.role_name = 'service_role' then array['EXECUTE'] else array[]::name[] end,
        pg_catalog.format('%s on %s', r.role_name, f.name)
    )
from (
    values
    ('authorize_credits'::name, array['text', 'numeric', 'text', 'text', 'text', 'jsonb', 'interval']::name[]),
    ('capture_credits', array['uuid', 'text', 'numeric', 'jsonb']),
    ('void_hold', array['uuid', 'text'])
) as f (name, args)
cross join (values ('anon'::name), ('authenticated'), ('service_role')) as r (role_name)
order by f.name, r.role_name;

select table_privs_are(
    'public', 'credit_holds', 'authenticated', array[]::name[], 'authenticated cannot read holds'
);

select * from finish();
rollback;

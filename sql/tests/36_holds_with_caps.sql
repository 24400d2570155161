-- H1 x H2: holds on a capped seat. The branches that built holds and caps
-- met only at the merge; this file shows the two rules together: an
-- authorize counts against the seat's cap from the moment it reserves, a
-- capture for less and a void give the rest back, an expired hold's share
-- comes back with the purge, and a deduction sees what holds took.
begin;
select plan(19);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_bob', 'member', 'active');
select tests.create_seat('org_acme', 'user_alice', 'member', 'active');
select tests.act_as_service_role();
select public.set_seat_cap(tests.seat_id('org_acme', 'user_bob'), 10, 'day');
select tests.reset_role();

create temp table h on commit drop as
select * from public.authorize_credits('user_bob', 6, 'stream 1', 'org_acme');

select is((select ok from h), true, 'H1 x H2: a hold of 6 under a cap of 10 is granted');
select is(
    tests.seat_spent('org_acme', 'user_bob'), 6::numeric,
    'H2: the hold counts against the cap from the authorize'
);
select results_eq(
    $$ select ok, reason from public.authorize_credits('user_bob', 5, 'stream 2', 'org_acme') $$,
    $$ values (false, 'seat_cap_reached') $$,
    'H2: a second hold of 5 would pass the cap (6 + 5 > 10): seat_cap_reached'
);
select is(
    (
        select s.held from public.organization_subscriptions as s
        inner join public.organizations as o on s.organization_id = o.id
        where o.clerk_org_id = 'org_acme' and s.is_current
    ),
    6::numeric(20, 4),
    '... and reserved nothing on the pool'
);
select results_eq(
    $$ select ok, reason from public.authorize_credits('user_alice', 50, 'uncapped', 'org_acme') $$,
    $$ values (true, null::text) $$,
    'H2: the pool is not short: an uncapped seat still holds 50'
);
select results_eq(
    $$ select ok, amount from public.capture_credits((select hold_id from h), 'user_bob', 2) $$,
    $$ values (true, 2::numeric) $$,
    'H1: the stream cost 2: captured 2'
);
select is(tests.seat_spent('org_acme', 'user_bob'), 2::numeric, 'H2: the 4 not captured went back to the cap');
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_bob', 8.0001, 'too much', 'org_acme') $$,
    $$ values (false, 'seat_cap_reached') $$,
    'H2: a deduction sees the capture: 2 + 8.0001 > 10'
);

create temp table v on commit drop as
select * from public.authorize_credits('user_bob', 8, 'stream 3', 'org_acme');
select is((select ok from v), true, 'H1 x H2: a hold of exactly the rest of the cap (8)');
select is(
    (select ok from public.void_hold((select hold_id from v), 'user_bob')), true,
    'H1: voided'
);
select is(tests.seat_spent('org_acme', 'user_bob'), 2::numeric, 'H2: a void gives its whole amount back to the cap');

-- An expired hold: its share of the cap comes back late, never early. The
-- purge sweeps it (pool lock) and leaves its cap to cap_pending, because
-- giving a cap back under the pool lock would invert the lock order (hold ->
-- seat cap -> pool); the next purge, or Bob's next authorize, returns it.
create temp table x on commit drop as
select * from public.authorize_credits('user_bob', 8, 'stream 4', 'org_acme', p_ttl => '1 second');
update public.credit_holds set expires_at = now() - interval '1 second'
where id = (select hold_id from x);
select is(tests.seat_spent('org_acme', 'user_bob'), 10::numeric, 'H2: an expired hold not yet swept still counts');
select lives_ok($$ select public.purge_expired_holds() $$, 'H1: the purge sweeps the expired hold');
select results_eq(
    $$ select state, cap_pending from public.credit_holds where id = (select hold_id from x) $$,
    $$ values ('expired', true) $$,
    'H1: swept (the pool''s held released), its cap pending'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_bob', 8, 'too early', 'org_acme') $$,
    $$ values (false, 'seat_cap_reached') $$,
    'H2: until then the cap counts it: late, never short (fail closed)'
);
select lives_ok($$ select public.purge_expired_holds() $$, 'H1: the next purge ...');
select is(tests.seat_spent('org_acme', 'user_bob'), 2::numeric, 'H2: ... gives its 8 back to the cap');
select results_eq(
    $$ select ok, balance from public.deduct_credits_pooled('user_bob', 8, 'the rest', 'org_acme') $$,
    $$ values (true, 90::numeric) $$,
    'H2: the cap''s rest (8) is spendable again (balance 100 - 2 - 8; Alice''s 50 only held)'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'H1 x H2: balances, ledger and held stay exact'
);

select * from finish();
rollback;

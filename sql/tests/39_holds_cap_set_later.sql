-- H1 x H2 over time: the seat gets a cap after its holds were authorized.
-- A hold authorized while the seat had no cap took nothing from a cap
-- (credit_holds.cap_taken is false), so a capture for less, a void or an
-- expiry gives nothing back to the cap set since: giving back what was never
-- taken would lower the seat's spend and let it pass its cap. Its capture is
-- counted against the new cap instead (the work was authorized and done, so
-- the capture itself is not refused; the requests after it see the spend).
begin;
select plan(12);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'active', 1000);
select tests.create_seat('org_acme', 'user_carol', 'member', 'active');

-- Three holds while Carol has no cap.
create temp table h on commit drop as
select
    (public.authorize_credits('user_carol', 40, 'stream a', 'org_acme')).hold_id as a,
    (public.authorize_credits('user_carol', 20, 'stream b', 'org_acme')).hold_id as b,
    (public.authorize_credits('user_carol', 5, 'stream c', 'org_acme')).hold_id as c;
select is(
    (select count(*)::int from public.credit_holds where not cap_taken and state = 'held'), 3,
    'H2: holds authorized without a cap took nothing from one (cap_taken false)'
);

-- An admin caps her at 30 a day; she spends 25 of it.
select tests.act_as_service_role();
select public.set_seat_cap(tests.seat_id('org_acme', 'user_carol'), 30, 'day');
select tests.reset_role();
select is(
    (select ok from public.deduct_credits_pooled('user_carol', 25, 'direct', 'org_acme')), true,
    'H2: a deduction of 25 under the new cap of 30'
);
select is(tests.seat_spent('org_acme', 'user_carol'), 25::numeric, 'H2: the cap counts 25');

select is(
    (select ok from public.capture_credits((select a from h), 'user_carol', 10)), true,
    'H1: the hold of 40 from before the cap is captured for 10 (not refused: it was authorized)'
);
select is(
    tests.seat_spent('org_acme', 'user_carol'), 35::numeric,
    'H2: its 10 count against the cap, and the 30 not captured give nothing back (never taken)'
);

select is(
    (select ok from public.void_hold((select b from h), 'user_carol')), true,
    'H1: the hold of 20 from before the cap is voided'
);
select is(tests.seat_spent('org_acme', 'user_carol'), 35::numeric, 'H2: the void gives nothing back either');

update public.credit_holds set expires_at = now() - interval '1 second'
where id = (select c from h);
select is(public.purge_expired_holds() >= 0, true, 'H1: the purge sweeps the expired hold of 5');
select results_eq(
    $$ select state, cap_pending from public.credit_holds where id = (select c from h) $$,
    $$ values ('expired', false) $$,
    'H2: an expired hold that took no cap leaves no cap to give back (cap_pending false)'
);
select is(tests.seat_spent('org_acme', 'user_carol'), 35::numeric, 'H2: the expiry gives nothing back');

select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_carol', 1, 'more', 'org_acme') $$,
    $$ values (false, 'seat_cap_reached') $$,
    'H2: past her cap (35 of 30): the next deduction is refused with seat_cap_reached'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'H1 x H2: balances, ledger and held stay exact'
);

select * from finish();
rollback;

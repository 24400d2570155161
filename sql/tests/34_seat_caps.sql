-- H2: per-seat caps inside an org pool. The take/give-back rule, the admin
-- RPCs under RLS, the view, and the deductions refusing seat_cap_reached.
begin;
select plan(52);

select tests.create_rls_story();
-- org_acme: pool 100, user_admin (admin), user_member (member), user_exadmin
-- (revoked admin); org_globex: pool 50, user_b (admin). Each active seat has
-- spent 1 already (create_rls_story).
select tests.create_seat('org_acme', 'user_owner', 'owner', 'active');
create function tests.org_id_34(p_clerk_org_id text) returns uuid
language sql stable security definer set search_path = ''
as $$ select o.id from public.organizations as o where o.clerk_org_id = p_clerk_org_id $$;
grant execute on function tests.org_id_34(text) to anon, authenticated, service_role;

-- take / give back, no cap ------------------------------------------------------
select ok(
    private.seat_cap_take(tests.seat_id('org_acme', 'user_member'), 1000),
    'H2: no cap (seat or org default): take returns true at once'
);
select is_empty(
    $$ select * from public.seat_cap_spend $$,
    'H2: and an uncapped seat writes no counter row'
);

-- set_seat_cap as service role ------------------------------------------------
select tests.act_as_service_role();
select is(
    (public.set_seat_cap(tests.seat_id('org_acme', 'user_member'), 10, 'day')).ok, true,
    'H2: the service role sets a seat cap'
);
select is(
    (public.set_seat_cap('00000000-0000-0000-0000-000000000000', 10, 'day')).reason,
    'unknown_seat', 'H2: service role, no such seat: unknown_seat'
);
select throws_ok(
    $$ select public.set_seat_cap(tests.seat_id('org_acme', 'user_member'), 10, 'week') $$,
    '22023', 'p_period must be one of day, month, subscription', 'H2: a bad period is 22023'
);
select throws_ok(
    $$ select public.set_seat_cap(tests.seat_id('org_acme', 'user_member'), -1, 'day') $$,
    '22023', 'p_cap must not be negative (got -1)', 'H2: a negative cap is 22023'
);
select throws_ok(
    $$ select public.set_seat_cap(tests.seat_id('org_acme', 'user_member'), 'NaN', 'day') $$,
    '22023', 'p_cap must be a finite number', 'H2: NaN is 22023'
);
select throws_ok(
    $$ select public.set_seat_cap(tests.seat_id('org_acme', 'user_member'), 1.00001, 'day') $$,
    '22023', 'p_cap must have at most 4 decimal places (got 1.00001)', 'H2: 5 decimals is 22023'
);
select throws_ok(
    $$ select public.set_seat_cap(null, 1, 'day') $$,
    '22023', 'p_seat_id must not be null', 'H2: a null seat is 22023'
);
select tests.reset_role();

-- the take rule -----------------------------------------------------------------
-- user_member spent 1 today already (the story): the counter starts there.
select ok(
    private.seat_cap_take(tests.seat_id('org_acme', 'user_member'), 9),
    'H2: 1 (already spent today) + 9 = the cap of 10: taken'
);
select is(
    (select spent from public.seat_cap_spend where seat_id = tests.seat_id('org_acme', 'user_member')),
    10.0000::numeric(20, 4),
    'H2: the period row started from the ledger (1) and counts the take (9)'
);
select ok(
    not private.seat_cap_take(tests.seat_id('org_acme', 'user_member'), 0.0001),
    'H2: one ten-thousandth more would pass the cap: false'
);
select ok(
    not private.seat_cap_take(tests.seat_id('org_acme', 'user_member'), 11),
    'H2: an amount above the cap itself: false'
);
select lives_ok(
    $$ select private.seat_cap_give_back(tests.seat_id('org_acme', 'user_member'), 4, now()) $$,
    'H2: give back 4 (a void)'
);
select is(
    (select spent from public.seat_cap_spend where seat_id = tests.seat_id('org_acme', 'user_member')),
    6.0000::numeric(20, 4), 'H2: the period row is down by 4'
);
select lives_ok(
    $$ select private.seat_cap_give_back(tests.seat_id('org_acme', 'user_member'), 4, now() - interval '2 days') $$,
    'H2: giving back to another day (no row) changes nothing'
);
select is(
    (select spent from public.seat_cap_spend where seat_id = tests.seat_id('org_acme', 'user_member')),
    6.0000::numeric(20, 4), 'H2: still 6'
);
select lives_ok(
    $$ select private.seat_cap_give_back(tests.seat_id('org_acme', 'user_member'), 100, now()) $$,
    'H2: giving back more than spent'
);
select is(
    (select spent from public.seat_cap_spend where seat_id = tests.seat_id('org_acme', 'user_member')),
    0.0000::numeric(20, 4), 'H2: stops at 0'
);
select private.seat_cap_take(tests.seat_id('org_acme', 'user_member'), 6);

-- deductions refuse seat_cap_reached, the pool is not short ------------------
select is(
    (public.deduct_credits_pooled('user_member', 4, 'under the cap', 'org_acme')).ok, true,
    'H2: a deduction within the cap succeeds (6 + 4 = 10)'
);
select is(
    (public.deduct_credits_pooled('user_member', 1, 'past the cap', 'org_acme')).reason,
    'seat_cap_reached', 'H2: the next one is refused with seat_cap_reached'
);
select is(
    tests.pool_balance('org_acme'), 94.0000::numeric(20, 4),
    'H2: the refused deduction wrote nothing (100 - 2 in the story - 4)'
);
select is(
    (public.deduct_credits_pooled('user_admin', 5, 'admin is not capped', 'org_acme')).ok, true,
    'H2: another seat of the same pool still spends'
);
select is(
    array(
        select b.reason
        from public.deduct_credits_pooled_batch(
                'org_acme',
                jsonb_build_array(
                    jsonb_build_object('clerk_user_id', 'user_admin', 'amount', 1, 'description', 'b1'),
                    jsonb_build_object('clerk_user_id', 'user_member', 'amount', 1, 'description', 'b2')
                )
            ) as b
    ),
    array[null, 'seat_cap_reached'],
    'H2: a batch element past its seat''s cap is refused with seat_cap_reached'
);
select is(
    tests.pool_balance('org_acme'), 88.0000::numeric(20, 4),
    'H2: and only the other element was charged'
);

-- the org default -----------------------------------------------------------------
select tests.act_as_service_role();
select is(
    (public.set_org_default_seat_cap(tests.create_org('org_init'), 2, 'month')).ok, true,
    'H2: the service role sets an org default'
);
select is(
    (public.set_org_default_seat_cap(
        tests.org_id_34('org_acme'), 2, 'month'
    )).cap, 2::numeric, 'H2: org default of 2 per month for acme'
);
select tests.reset_role();
select is(
    (public.deduct_credits_pooled('user_owner', 2, 'owner within the default', 'org_acme')).ok,
    true, 'H2: a seat without its own cap follows the org default: 2 fits'
);
select is(
    (public.deduct_credits_pooled('user_owner', 0.5, 'owner past the default', 'org_acme')).reason,
    'seat_cap_reached', 'H2: and the next 0.5 does not'
);
select is(
    (public.deduct_credits_pooled('user_member', 1, 'member own cap wins', 'org_acme')).reason,
    'seat_cap_reached', 'H2: a seat''s own cap wins over the default (member still at 10/10)'
);

-- the view ---------------------------------------------------------------------------
select results_eq(
    $$ select cap, period, cap_source, spent, remaining from public.seat_spend_vs_cap
       where seat_id = tests.seat_id('org_acme', 'user_owner') $$,
    $$ values (2.0000::numeric, 'month'::text, 'organization'::text, 2.0000::numeric, 0.0000::numeric) $$,
    'H2: seat_spend_vs_cap shows the default cap, the spend and what remains'
);
select results_eq(
    $$ select cap_source, spent from public.seat_spend_vs_cap
       where seat_id = tests.seat_id('org_acme', 'user_member') $$,
    $$ values ('seat'::text, 10.0000::numeric) $$,
    'H2: and a seat''s own cap'
);
select tests.act_as_user('user_admin');
select throws_ok(
    $$ select * from public.seat_spend_vs_cap $$, '42501', null,
    'H2: the view is not exposed to signed-in users (service role only, like the other analytics views)'
);
select tests.reset_role();

-- RLS: who may set caps -----------------------------------------------------------
select tests.act_as_user('user_admin');
select is(
    (public.set_seat_cap(tests.seat_id('org_acme', 'user_member'), 20, 'subscription')).ok, true,
    'H2: an admin of the org sets a cap on its seat'
);
select is(
    (public.set_seat_cap(tests.seat_id('org_globex', 'user_b'), 20, 'day')).reason, 'not_an_admin',
    'H2: an admin of another org may not cap this seat'
);
select is(
    (public.set_org_default_seat_cap(
        tests.org_id_34('org_acme'), null, null
    )).ok, true, 'H2: an admin clears the org default (null cap = none)'
);
select tests.act_as_user('user_member');
select is(
    (public.set_seat_cap(tests.seat_id('org_acme', 'user_member'), 1000, 'day')).reason,
    'not_an_admin', 'H2: a member may not lift their own cap'
);
select tests.act_as_user('user_exadmin');
select is(
    (public.set_seat_cap(tests.seat_id('org_acme', 'user_member'), 1000, 'day')).reason,
    'not_an_admin', 'H2: a revoked admin may not either'
);
select tests.act_as_user('user_b');
select is(
    (public.set_org_default_seat_cap(
        tests.org_id_34('org_acme'), 1000, 'day'
    )).reason,
    'not_an_admin', 'H2: an admin of another org may not set this org''s default'
);
select tests.act_as_anon();
select throws_ok(
    $$ select public.set_seat_cap(tests.seat_id('org_acme', 'user_member'), 1, 'day') $$,
    '42501', null, 'H2: anon may not call set_seat_cap'
);
select throws_ok(
    $$ select private.seat_cap_take(tests.seat_id('org_acme', 'user_member'), 1) $$,
    '42501', null, 'H2: nor the private helpers'
);
select tests.reset_role();
select results_eq(
    $$ select spend_cap, spend_cap_period::text from public.organization_seats
       where id = tests.seat_id('org_acme', 'user_member') $$,
    $$ values (20.0000::numeric(20, 4), 'subscription'::text) $$,
    'H2: only the admin''s change was stored'
);

-- a debit refused for the pool gives the cap room back ------------------------
select tests.create_org('org_small');
select tests.create_subscription('org_small', 'active', 5);
select tests.create_seat('org_small', 'user_small');
select tests.act_as_service_role();
select public.set_seat_cap(tests.seat_id('org_small', 'user_small'), 10, 'subscription');
select tests.reset_role();
select is(
    (public.deduct_credits_pooled('user_small', 6, 'more than the pool', 'org_small')).reason,
    'insufficient_credits', 'H2: within the cap but past the pool: insufficient_credits (402)'
);
select is(
    (select sp.spent from public.seat_cap_spend as sp where sp.seat_id = tests.seat_id('org_small', 'user_small')),
    0.0000::numeric(20, 4), 'H2: and the 6 taken from the cap were given back'
);
select is(
    (public.deduct_credits_pooled('user_small', 5, 'the whole pool', 'org_small')).ok, true,
    'H2: so the seat can still spend what the pool holds'
);

-- the page's RPCs (service role acting for a named user) ------------------------
select tests.act_as_service_role();
select is(
    (public.set_seat_cap_as('user_admin', tests.seat_id('org_acme', 'user_member'), 30, 'month')).cap,
    30::numeric, 'H2: set_seat_cap_as for an admin of the seat''s org'
);
select is(
    (public.set_seat_cap_as('user_member', tests.seat_id('org_acme', 'user_member'), 1000, 'month')).reason,
    'not_an_admin', 'H2: set_seat_cap_as for a member is refused, even from the service role'
);
select is(
    (public.set_org_default_seat_cap_as('user_b', tests.org_id_34('org_acme'), 5, 'day')).reason,
    'not_an_admin', 'H2: set_org_default_seat_cap_as for an admin of another org is refused'
);
select results_eq(
    $$ select clerk_org_id, count(*)::int from public.seat_caps_overview('user_admin') group by 1 $$,
    $$ values ('org_acme', 4) $$,
    'H2: seat_caps_overview lists the admin''s org with its four seats, one row each'
);
select is_empty(
    $$ select * from public.seat_caps_overview('user_member') $$,
    'H2: and nothing for a member'
);
select tests.act_as_user('user_admin');
select throws_ok(
    $$ select public.seat_caps_overview('user_admin') $$, '42501', null,
    'H2: seat_caps_overview is service role only'
);
select tests.reset_role();
select is_empty($$ select * from public.credit_consistency_check() $$, 'H2: the ledger matches the pools');

select * from finish();
rollback;

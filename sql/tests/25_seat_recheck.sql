-- C3: the seat is checked again at deduction time. A token minted while the
-- seat was active does not keep the pool open after the seat is revoked.
begin;
select plan(11);

select tests.create_org('org_acme', 'Acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_member', 'member', 'active');

select tests.act_as_service_role();

-- The issuer resolved attribution and minted an org-scoped token ...
select isnt(
    public.resolve_org_attribution('user_member', 'org_acme'), null,
    'while the seat is active the user gets org attribution (a token is minted)'
);
select results_eq(
    $$ select ok from public.deduct_credits_pooled('user_member', 10, 'before', 'org_acme') $$,
    $$ values (true) $$,
    'and can spend the pool'
);

-- ... then an org admin suspends the seat (through the issuer, as the service role).
select results_eq(
    $$ select status::text from public.set_seat_status('org_acme', 'user_member', 'suspended') $$,
    $$ values ('suspended') $$,
    'set_seat_status suspends the seat and returns it'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_member', 10, 'after', 'org_acme') $$,
    $$ values (false, 'no_active_seat') $$,
    'a seat suspended after attribution cannot spend: no_active_seat'
);
select is(public.resolve_org_attribution('user_member', 'org_acme'), null, 'nor get new attribution');

select lives_ok(
    $$ select public.set_seat_status('org_acme', 'user_member', 'revoked') $$,
    'the demo revokes a seat with set_seat_status'
);
select results_eq(
    $$ select ok, reason from public.deduct_credits_pooled('user_member', 10, 'revoked', 'org_acme') $$,
    $$ values (false, 'no_active_seat') $$,
    'a revoked seat cannot spend'
);

select lives_ok(
    $$ select public.set_seat_status('org_acme', 'user_member', 'active') $$,
    'reactivating the seat ...'
);
select results_eq(
    $$ select ok, balance from public.deduct_credits_pooled('user_member', 10, 'again', 'org_acme') $$,
    $$ values (true, 80::numeric) $$,
    '... opens the pool again; refused attempts cost nothing'
);

select throws_ok(
    $$ select public.set_seat_status('org_acme', 'user_member', 'banned') $$,
    '22023', 'p_status must be one of active, pending, suspended, revoked',
    'set_seat_status names a bad p_status'
);
select throws_ok(
    $$ select public.set_seat_status('org_acme', 'user_nobody', 'active') $$,
    'P0002', 'no seat for p_clerk_user_id user_nobody in p_clerk_org_id org_acme',
    'set_seat_status does not create seats: an unknown seat is P0002'
);

select tests.reset_role();
select * from finish();
rollback;

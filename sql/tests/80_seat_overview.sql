-- seat_overview: a user's seats with org names and statuses for the issuer's
-- org picker. Every status is listed; only an active seat is selectable, the
-- same rule as resolve_org_attribution. Service role only (D2, D3).
begin;
select plan(16);

select tests.create_user('user_alice');
select tests.create_user('user_bob');
select tests.create_user('user_nobody');
select tests.create_org('org_zeta', 'Zeta Labs');
select tests.create_org('org_acme', 'Acme');
select tests.create_org('org_mid', 'Midway');
select tests.create_org('org_gone', 'Gone Corp');
select tests.create_seat('org_zeta', 'user_alice', 'owner', 'active');
select tests.create_seat('org_acme', 'user_alice', 'member', 'suspended');
select tests.create_seat('org_mid', 'user_alice', 'admin', 'pending');
select tests.create_seat('org_gone', 'user_alice', 'member', 'revoked');
select tests.create_seat('org_acme', 'user_bob', 'member', 'active');

-- Behaviour, as the issuer (service_role) ---------------------------------------

select tests.act_as_service_role();

select results_eq(
    $$ select * from public.seat_overview('user_alice') $$,
    $$ values
        ('org_acme', 'Acme', 'member', 'suspended', false),
        ('org_gone', 'Gone Corp', 'member', 'revoked', false),
        ('org_mid', 'Midway', 'admin', 'pending', false),
        ('org_zeta', 'Zeta Labs', 'owner', 'active', true) $$,
    'every seat of the user, any status, by organization name; only the active one is selectable'
);

select results_eq(
    $$ select * from public.seat_overview('user_bob') $$,
    $$ values ('org_acme', 'Acme', 'member', 'active', true) $$,
    'another user sees only their own seat, in the same org where alice is suspended'
);

select is_empty($$ select * from public.seat_overview('user_nobody') $$, 'a user without seats gets no rows');
select is_empty($$ select * from public.seat_overview('user_unknown') $$, 'an unknown user gets no rows');
select is_empty($$ select * from public.seat_overview(null) $$, 'a null user gets no rows');

-- selectable agrees with resolve_org_attribution for every seat of alice.
select is_empty(
    $$select o.clerk_org_id
      from public.seat_overview('user_alice') as o
      where o.selectable
          is distinct from not (public.resolve_org_attribution('user_alice', o.clerk_org_id) is null)$$,
    'selectable is true exactly where resolve_org_attribution grants the org'
);

select tests.create_seat('org_mid', 'user_bob', 'member', 'pending');
select public.set_seat_status('org_mid', 'user_bob', 'active');
select ok(
    (select o.selectable from public.seat_overview('user_bob') as o where o.clerk_org_id = 'org_mid'),
    'a seat that becomes active becomes selectable'
);

select public.set_seat_status('org_acme', 'user_bob', 'suspended');
select is(
    (select o.seat_status from public.seat_overview('user_bob') as o where o.clerk_org_id = 'org_acme'),
    'suspended',
    'a suspended seat shows its status at once'
);

select tests.reset_role();

-- Privileges (D2, D3) ---------------------------------------------------------

select function_privs_are(
    'public', 'seat_overview', array['text'], 'anon', array[]::text[],
    'anon cannot execute seat_overview'
);
select function_privs_are(
    'public', 'seat_overview', array['text'], 'authenticated', array[]::text[],
    'authenticated cannot execute seat_overview (it takes a user id as an argument)'
);
select function_privs_are(
    'public', 'seat_overview', array['text'], 'service_role', array['EXECUTE'],
    'service_role executes seat_overview'
);
select ok(
    not exists (
        select 1
        from pg_proc as p, aclexplode(p.proacl) as a
        where p.oid = 'public.seat_overview(text)'::regprocedure and a.grantee = 0
    ),
    'PUBLIC has no execute on seat_overview'
);
select is_definer(
    'public', 'seat_overview', array['text'],
    'seat_overview is security definer (it calls private.seat_allows_spending)'
);
select ok(
    (
        select 'search_path=""' = any(p.proconfig)
        from pg_proc as p
        where p.oid = 'public.seat_overview(text)'::regprocedure
    ),
    'seat_overview sets search_path to empty'
);
select isnt(
    obj_description('public.seat_overview(text)'::regprocedure, 'pg_proc'), null,
    'seat_overview is commented'
);

select tests.act_as_user('user_alice');
select throws_ok(
    $$select * from public.seat_overview('user_alice')$$,
    '42501',
    null,
    'a signed-in user cannot call seat_overview, not even for themselves'
);

select * from finish();
rollback;

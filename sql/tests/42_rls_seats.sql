-- RLS matrix, organization_seats: users read their own seats; active owners
-- and admins read all seats of their org.
begin;
select plan(12);

select tests.create_rls_story();

select policies_are(
    'public', 'organization_seats', array['users read their own and admins their org''s seats'],
    'organization_seats has exactly its read policy'
);
select policy_roles_are(
    'public', 'organization_seats', 'users read their own and admins their org''s seats', array['authenticated'],
    'for authenticated only'
);

select tests.act_as_anon();
select throws_ok($$ select * from public.organization_seats $$, '42501', null, 'anon reads nothing');

select tests.act_as_user('user_a');
select is_empty($$ select * from public.organization_seats $$, 'user A (no seat) reads no seat');
select tests.act_as_user('user_b');
select results_eq(
    $$ select count(*)::int from public.organization_seats $$, array[1],
    'user B reads their own seat (the only one in their org)'
);
select tests.act_as_user('user_member');
select results_eq(
    $$ select id from public.organization_seats $$,
    $$ select tests.seat_id('org_acme', 'user_member') $$,
    'an org member reads only their own seat'
);
select tests.act_as_user('user_admin');
select results_eq(
    $$ select id from public.organization_seats order by id $$,
    $$ select id from public.organization_seats
       where id in (tests.seat_id('org_acme', 'user_admin'), tests.seat_id('org_acme', 'user_member'),
                    tests.seat_id('org_acme', 'user_exadmin'))
       order by id $$,
    'an org admin reads every seat of their org'
);
select results_eq(
    $$ select count(*)::int from public.organization_seats where id = tests.seat_id('org_globex', 'user_b') $$,
    array[0],
    'and no seat of another org'
);
select tests.act_as_user('user_exadmin');
select results_eq(
    $$ select id from public.organization_seats $$,
    $$ select tests.seat_id('org_acme', 'user_exadmin') $$,
    'a revoked admin reads only their own (revoked) seat'
);
select tests.act_as_user('user_member');
select throws_ok(
    $$ update public.organization_seats set role = 'owner' $$, '42501', null,
    'a member cannot promote themselves'
);

select tests.act_as_service_role();
select
    results_eq(
        $$ select count(*)::int from public.organization_seats $$, array[4], 'the service role reads every seat'
    );
select lives_ok(
    $$ update public.organization_seats set status = 'suspended' where id = tests.seat_id('org_acme', 'user_member') $$,
    'the service role may change a seat''s status'
);
select tests.reset_role();

select * from finish();
rollback;

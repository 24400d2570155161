-- RLS matrix, credit_transactions: users read their own rows; active owners
-- and admins read all rows of their org; anon reads nothing.
begin;
select plan(11);

select tests.create_rls_story();

select policies_are(
    'public', 'credit_transactions', array['users read their own and admins their org''s transactions'],
    'credit_transactions has exactly its read policy'
);
select policy_roles_are(
    'public', 'credit_transactions', 'users read their own and admins their org''s transactions',
    array['authenticated'], 'for authenticated only'
);

select tests.act_as_anon();
select throws_ok($$ select * from public.credit_transactions $$, '42501', null, 'anon reads nothing');

select tests.act_as_user('user_a');
select results_eq(
    $$ select description from public.credit_transactions order by 1 $$,
    array['a personal', 'test fixture: personal credits'],
    'user A reads their own (personal) transactions only'
);
select tests.act_as_user('user_b');
select results_eq(
    $$ select description from public.credit_transactions order by 1 $$,
    array['b in globex', 'test fixture: pool credits'],
    'user B (admin of Globex) reads Globex''s transactions, none of Acme''s or user A''s'
);
select tests.act_as_user('user_member');
select results_eq(
    $$ select description from public.credit_transactions order by 1 $$,
    array['member in acme'],
    'an org member reads only their own transactions, not the admin''s or the org''s grants'
);
select tests.act_as_user('user_admin');
select results_eq(
    $$ select description from public.credit_transactions order by 1 $$,
    array['admin in acme', 'member in acme', 'test fixture: pool credits'],
    'an org admin reads every transaction of their org'
);
select tests.act_as_user('user_exadmin');
select is_empty(
    $$ select * from public.credit_transactions $$,
    'a revoked admin reads nothing of the org'
);
select tests.act_as_user('user_nobody');
select is_empty($$ select * from public.credit_transactions $$, 'an unknown signed-in user reads nothing');

select tests.act_as_service_role();
select results_eq(
    $$ select count(*)::int from public.credit_transactions $$, array[7],
    'the service role reads every transaction'
);
select tests.reset_role();

select tests.act_as_user('user_admin', '{"sub": "user_member"}');
select results_eq(
    $$ select description from public.credit_transactions order by 1 $$,
    array['member in acme'],
    'identity is the sub claim (Clerk user id), nothing else'
);
select tests.reset_role();

select * from finish();
rollback;

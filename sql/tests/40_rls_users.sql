-- RLS matrix, users: a signed-in user reads their own row only; anon reads
-- nothing; only the service role writes (and never the balance).
begin;
select plan(13);

select tests.create_rls_story();

select policies_are('public', 'users', array['users read their own row'], 'users has exactly its read policy');
select policy_roles_are(
    'public', 'users', 'users read their own row', array['authenticated'], 'for authenticated only'
);
select policy_cmd_is('public', 'users', 'users read their own row', 'select', 'and only for select');

select tests.act_as_anon();
select throws_ok($$ select * from public.users $$, '42501', null, 'anon reads nothing');

select tests.act_as_user('user_a');
select results_eq($$ select clerk_user_id from public.users $$, array['user_a'], 'user A reads only their own row');
select tests.act_as_user('user_b');
select results_eq($$ select clerk_user_id from public.users $$, array['user_b'], 'user B reads only their own row');
select tests.act_as_user('user_member');
select results_eq(
    $$ select clerk_user_id from public.users $$, array['user_member'],
    'an org member reads only their own row'
);
select tests.act_as_user('user_admin');
select results_eq(
    $$ select clerk_user_id from public.users $$, array['user_admin'],
    'an org admin reads only their own row (not their members'')'
);
select tests.act_as_user('user_nobody');
select is_empty($$ select * from public.users $$, 'a signed-in user without a row reads nothing');

select tests.act_as_user('user_a');
select throws_ok(
    $$ update public.users set credits_balance = 1000000 where clerk_user_id = 'user_a' $$,
    '42501', null, 'a user cannot raise their own balance'
);
select throws_ok(
    $$ insert into public.users (clerk_user_id) values ('user_forged') $$,
    '42501', null, 'a user cannot create users'
);

select tests.act_as_service_role();
select results_eq(
    $$ select count(*)::int from public.users $$, array[5], 'the service role reads every user'
);
select throws_ok(
    $$ update public.users set credits_balance = 1000000 where clerk_user_id = 'user_a' $$,
    '42501', null, 'the service role cannot write a balance directly'
);
select tests.reset_role();

select * from finish();
rollback;

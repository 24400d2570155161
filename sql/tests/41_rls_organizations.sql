-- RLS matrix, organizations: seat holders (active seat) read their orgs.
begin;
select plan(11);

select tests.create_rls_story();

select policies_are(
    'public', 'organizations', array['seat holders read their organizations'],
    'organizations has exactly its read policy'
);
select policy_roles_are(
    'public', 'organizations', 'seat holders read their organizations', array['authenticated'],
    'for authenticated only'
);

select tests.act_as_anon();
select throws_ok($$ select * from public.organizations $$, '42501', null, 'anon reads nothing');

select tests.act_as_user('user_a');
select is_empty($$ select * from public.organizations $$, 'user A (no seat) reads no organization');
select tests.act_as_user('user_b');
select results_eq(
    $$ select clerk_org_id from public.organizations $$, array['org_globex'],
    'user B reads only their org'
);
select tests.act_as_user('user_member');
select results_eq(
    $$ select clerk_org_id from public.organizations $$, array['org_acme'],
    'an org member reads their org'
);
select tests.act_as_user('user_admin');
select results_eq(
    $$ select clerk_org_id from public.organizations $$, array['org_acme'],
    'an org admin reads their org'
);
select tests.act_as_user('user_exadmin');
select is_empty($$ select * from public.organizations $$, 'a revoked seat reads no organization');
select throws_ok(
    $$ update public.organizations set name = 'Hijacked' $$, '42501', null,
    'a signed-in user cannot rename an organization'
);

select tests.act_as_service_role();
select results_eq(
    $$ select clerk_org_id from public.organizations order by 1 $$, array['org_acme', 'org_globex'],
    'the service role reads every organization'
);
select lives_ok(
    $$ update public.organizations set name = 'Acme Corp' where clerk_org_id = 'org_acme' $$,
    'the service role may rename one (webhook sync)'
);
select tests.reset_role();

select * from finish();
rollback;

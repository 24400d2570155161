-- A Supabase project with Clerk as third-party auth (docs/supabase-clerk.md):
-- PostgREST verifies Clerk's session token, takes the Postgres role from its
-- `role` claim and exposes the payload as request.jwt.claims. With the payload
-- of a real Clerk v2 session token (string `sub`, not a uuid), a member reaches
-- RLS and get_my_org_pools() through auth.jwt() ->> 'sub'; the Supabase JWT
-- secret plays no part.
begin;
select plan(6);

select tests.create_org('org_2xyzAcme', 'Acme');
select tests.create_subscription('org_2xyzAcme', 'active', 100, 'sub_clerk_46');
select tests.create_seat('org_2xyzAcme', 'user_2NNEqL2nrIRdJ194ndJqAHwEfxC', 'member', 'active');
select tests.create_seat('org_2xyzAcme', 'user_2otherMemberOf46', 'member', 'active');

-- What PostgREST does with a verified Clerk session token carrying role = authenticated.
select pg_catalog.set_config('request.jwt.claims', $json${
    "azp": "https://app.example.com",
    "exp": 1893456000,
    "fva": [0, -1],
    "iat": 1893455940,
    "iss": "https://example.clerk.accounts.dev",
    "nbf": 1893455930,
    "o": {"id": "org_2xyzAcme", "rol": "member", "slg": "acme"},
    "role": "authenticated",
    "sid": "sess_2xyz",
    "sub": "user_2NNEqL2nrIRdJ194ndJqAHwEfxC",
    "v": 2
}$json$, true);
select pg_catalog.set_config('role', 'authenticated', true);

select is(auth.jwt() ->> 'sub', 'user_2NNEqL2nrIRdJ194ndJqAHwEfxC', 'auth.jwt() ->> ''sub'' is the Clerk user id');
select is(current_user::text, 'authenticated', 'the role claim made the request authenticated');
select results_eq(
    $$ select clerk_org_id, seat_role, pool_balance from public.get_my_org_pools() $$,
    $$ values ('org_2xyzAcme', 'member', 100::numeric) $$,
    'a member reaches get_my_org_pools() with a Clerk session token'
);
select results_eq(
    $$ select clerk_user_id from public.users $$,
    $$ values ('user_2NNEqL2nrIRdJ194ndJqAHwEfxC') $$,
    'RLS: they read their own user row only'
);
select results_eq(
    $$ select clerk_org_id from public.organizations $$,
    $$ values ('org_2xyzAcme') $$,
    'RLS: and the org they hold a seat in'
);

-- Without the role claim Supabase would not run the request as authenticated:
-- as anon, nothing of the member's is visible.
select tests.act_as_anon();
select pg_catalog.set_config(
    'request.jwt.claims', '{"sub": "user_2NNEqL2nrIRdJ194ndJqAHwEfxC"}', true
);
select throws_ok(
    $$ select * from public.get_my_org_pools() $$,
    '42501', null, 'a token without role = authenticated does not reach get_my_org_pools()'
);

select * from finish();
rollback;

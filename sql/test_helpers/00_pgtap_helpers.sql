-- Test-only helpers for pgTAP files in sql/tests. Applied to the test template
-- database after the bootstrap and the migrations; never to a real project.
--
-- Role switching uses set_config('role', ..., true): it lasts until the end of
-- the current transaction, and every pgTAP file runs in one transaction.

create extension if not exists pgtap with schema extensions;
-- The first migration revoked default execute; pgTAP must stay callable while a
-- test acts as anon / authenticated / service_role.
grant execute on all functions in schema extensions to anon, authenticated, service_role;

create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

-- Act as a signed-in user: role authenticated with Clerk-style claims.
-- p_claims is merged over {"sub": p_sub, "role": "authenticated"}, so a test
-- can add {"o": {"id": "org_..", "rol": "admin"}} or {"org_id": ...}.
create or replace function tests.act_as_user(p_sub text, p_claims jsonb default '{}')
returns void
language plpgsql
as $$
begin
    perform pg_catalog.set_config(
        'request.jwt.claims',
        (jsonb_build_object('sub', p_sub, 'role', 'authenticated') || p_claims)::text,
        true
    );
    perform pg_catalog.set_config('role', 'authenticated', true);
end
$$;

create or replace function tests.act_as_anon()
returns void
language plpgsql
as $$
begin
    perform pg_catalog.set_config('request.jwt.claims', '{"role": "anon"}', true);
    perform pg_catalog.set_config('role', 'anon', true);
end
$$;

create or replace function tests.act_as_service_role()
returns void
language plpgsql
as $$
begin
    perform pg_catalog.set_config('request.jwt.claims', '{"role": "service_role"}', true);
    perform pg_catalog.set_config('role', 'service_role', true);
end
$$;

-- Back to the session user (the superuser that runs the tests), no claims.
create or replace function tests.reset_role()
returns void
language plpgsql
as $$
begin
    perform pg_catalog.set_config('request.jwt.claims', '', true);
    perform pg_catalog.set_config('role', session_user, true);
end
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;

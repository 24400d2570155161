-- What a plain Postgres lacks and a Supabase project has.
--
-- Applied to local and test databases ONLY (issuer db up / migrate --bootstrap,
-- the test fixtures, the demo). Never applied to a Supabase project and never
-- part of supabase/migrations: Supabase already has all of this.
--
-- Idempotent: safe to run again on the same database. Roles are cluster-wide,
-- so several databases of one cluster share them.

-- Roles ---------------------------------------------------------------------
do $$
declare
    r record;
begin
    for r in
        select *
        from (values
            ('anon', 'nologin noinherit'),
            ('authenticated', 'nologin noinherit'),
            ('service_role', 'nologin noinherit bypassrls'),
            ('authenticator', 'login noinherit')
        ) as v (rolname, options)
    loop
        if not exists (select 1 from pg_catalog.pg_roles where rolname = r.rolname) then
            begin
                execute format('create role %I %s', r.rolname, r.options);
            exception when duplicate_object or unique_violation then
                null;  -- created concurrently by another database's bootstrap
            end;
        end if;
    end loop;
    -- PostgREST logs in as authenticator and switches to these roles.
    execute 'grant anon, authenticated, service_role to authenticator';
end
$$;

-- Schemas -------------------------------------------------------------------
create schema if not exists auth;
create schema if not exists extensions;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema extensions to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

create extension if not exists pgcrypto with schema extensions;

-- auth.* helpers, as Supabase defines them: they read the claims PostgREST
-- puts in request.jwt.claims (and the legacy request.jwt.claim.* settings).
create or replace function auth.jwt()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

create or replace function auth.uid()
returns uuid
language sql
stable
set search_path = ''
as $$
    select coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
        (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;

create or replace function auth.role()
returns text
language sql
stable
set search_path = ''
as $$
    select coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
        (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$$;

grant execute on function auth.jwt(), auth.uid(), auth.role()
to anon, authenticated, service_role;

-- Supabase's default privileges: everything the migration owner creates in
-- schema public is granted to anon, authenticated and service_role. This is
-- the trap every migration must close by revoking what it does not expose.
alter default privileges in schema public
grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public
grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public
grant all on functions to anon, authenticated, service_role;

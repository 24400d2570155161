-- Lock the doors first.
--
-- On a Supabase project everything created in schema public is granted to
-- anon, authenticated and service_role by default, and every function is
-- executable by PUBLIC. From here on nothing is reachable unless a later
-- migration grants it, next to the object it opens, on purpose.

-- Functions: no implicit execute, anywhere, for objects this role creates.
alter default privileges revoke execute on functions from public;
alter default privileges in schema public
revoke execute on functions from public, anon, authenticated;

-- Tables and sequences in public: no implicit access for the API roles.
-- Each table's migration grants exactly what it exposes (and RLS filters it).
alter default privileges in schema public
revoke all on tables from anon, authenticated;
alter default privileges in schema public
revoke all on sequences from anon, authenticated;

-- Helpers the API never exposes live in schema private: PostgREST serves
-- only the schemas listed in supabase/config.toml ([api] schemas).
create schema if not exists private;
revoke all on schema private from public;
comment on schema private is
'Internal helpers of the credit system. Not exposed by the API; nothing for anon; authenticated '
'gets USAGE only (20260101000700_member_reads) and EXECUTE on the helpers named in their migrations.';

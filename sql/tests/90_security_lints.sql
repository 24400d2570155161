-- Security lints as tests (SECURITY.md D1-D6), over the catalog: every
-- table, view, function and policy in schemas public and private, whichever
-- migration created it (objects that belong to extensions are skipped). A
-- migration that adds an object is checked here without editing this file;
-- one that opens a function to anon or authenticated must add it to the
-- listed sets below, on purpose.
begin;
select plan(22);

-- The objects under inspection.
create temp view lint_tables as
select
    c.oid,
    n.nspname,
    c.relname,
    c.relkind,
    c.relrowsecurity,
    c.reloptions
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
    n.nspname in ('public', 'private')
    and c.relkind in ('r', 'p', 'v', 'm', 'f')
    and not exists (
        select 1 from pg_catalog.pg_depend as d
        where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'
    );

create temp view lint_functions as
select
    p.oid,
    p.oid::regprocedure::text as signature,
    n.nspname,
    p.proname,
    p.prosecdef,
    p.proconfig
from pg_catalog.pg_proc as p
inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
where
    n.nspname in ('public', 'private')
    and not exists (
        select 1 from pg_catalog.pg_depend as d
        where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'
    );

-- D1 ---------------------------------------------------------------------------

select is_empty(
    $$ select relname from lint_tables where nspname = 'public' and relkind in ('r', 'p')
       and not relrowsecurity $$,
    'D1: every table in public has row level security enabled'
);

select is_empty(
    $$ select relname from lint_tables where nspname = 'public' and relkind = 'v'
       and not coalesce(reloptions @> array['security_invoker=true'], false) $$,
    'D1: every view in public is security_invoker (no view bypasses RLS)'
);

select is_empty(
    $$ select relname from lint_tables where nspname = 'public' and relkind in ('m', 'f') $$,
    'D1: no materialized view or foreign table in public (RLS cannot protect them)'
);

-- D2 ---------------------------------------------------------------------------

select is_empty(
    $$ select signature from lint_functions
       where not exists (select 1 from unnest(coalesce(proconfig, '{}')) as c where c like 'search_path=%') $$,
    'D2: every function has a fixed search_path'
);

select is_empty(
    $$ select signature from lint_functions
       where prosecdef and not ('search_path=""' = any(coalesce(proconfig, '{}'))) $$,
    'D2: every security definer function sets search_path to '''''
);

-- D3 ---------------------------------------------------------------------------

select is_empty(
    $$ select signature from lint_functions
       where prosecdef and pg_catalog.has_function_privilege('anon', oid, 'execute') $$,
    'D3: no security definer function is executable by anon'
);

select is_empty(
    $$ select signature from lint_functions where pg_catalog.has_function_privilege('anon', oid, 'execute') $$,
    'D3: no function at all is executable by anon'
);

-- The listed and justified set (docs/database.md, "Grants"):
--   private.current_app_user_id()       RLS helper: the caller's own users.id
--   private.admin_organization_ids()    RLS helper: orgs the caller administers
--   private.member_organization_ids()   RLS helper: orgs the caller is seated in
--   private.my_org_pools()              the caller's pools and own usage (get_my_org_pools)
select set_eq(
    $$ select signature from lint_functions
       where prosecdef and pg_catalog.has_function_privilege('authenticated', oid, 'execute') $$,
    array[
        'private.current_app_user_id()',
        'private.admin_organization_ids()',
        'private.member_organization_ids()',
        'private.my_org_pools()',
        'private.set_seat_cap_checked(uuid,numeric,text)',
        'private.set_org_default_seat_cap_checked(uuid,numeric,text)',
        'private.set_low_balance_thresholds_checked(uuid,numeric[],numeric[])',
        'private.set_low_balance_webhook_checked(uuid,text)'
    ],
    'D3: the security definer functions executable by authenticated are exactly the listed ones'
);

select set_eq(
    $$ select signature from lint_functions
       where pg_catalog.has_function_privilege('authenticated', oid, 'execute') $$,
    array[
        'private.current_app_user_id()',
        'private.admin_organization_ids()',
        'private.member_organization_ids()',
        'private.my_org_pools()',
        'get_my_org_pools()',
        'get_my_personal_balance()',
        'private.set_seat_cap_checked(uuid,numeric,text)',
        'private.set_org_default_seat_cap_checked(uuid,numeric,text)',
        'private.set_low_balance_thresholds_checked(uuid,numeric[],numeric[])',
        'private.set_low_balance_webhook_checked(uuid,text)',
        'set_seat_cap(uuid,numeric,text)',
        'set_org_default_seat_cap(uuid,numeric,text)',
        'set_low_balance_thresholds(uuid,numeric[],numeric[])',
        'set_low_balance_webhook(uuid,text)'
    ],
    'D3: every function executable by authenticated is listed'
);

-- Supabase's database linter (splinter), lints 0028 and 0029, as it runs them:
-- no security definer function in a schema PostgREST exposes (public here;
-- pgrst.db_schemas on a real project) is executable by anon or authenticated.
select is_empty(
    $$ select n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'
       from pg_catalog.pg_proc as p
       inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
       where p.prosecdef
         and pg_catalog.has_function_privilege('authenticated', p.oid, 'EXECUTE')
         and n.nspname = any(array['public', 'graphql_public'] || coalesce(array(
             select pg_catalog.btrim(s)
             from pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.current_setting('pgrst.db_schemas', true), ',')) as s
         ), '{}'::text[])) $$,
    'splinter 0029 authenticated_security_definer_function_executable: no warning'
);
select is_empty(
    $$ select n.nspname || '.' || p.proname
       from pg_catalog.pg_proc as p
       inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
       where p.prosecdef
         and pg_catalog.has_function_privilege('anon', p.oid, 'EXECUTE')
         and n.nspname in ('public', 'graphql_public') $$,
    'splinter 0028 anon_security_definer_function_executable: no warning'
);
select is_empty(
    $$ select c.relname from pg_catalog.pg_class as c
       inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
       where n.nspname = 'private'
         and (pg_catalog.has_table_privilege('authenticated', c.oid, 'select')
              or pg_catalog.has_table_privilege('anon', c.oid, 'select')) $$,
    'schema private: no relation is readable by anon or authenticated'
);

select is_empty(
    $$ select signature from lint_functions
       where nspname = 'private'
         and pg_catalog.has_function_privilege('service_role', oid, 'execute') $$,
    'private helpers are reached only through the public RPCs, not called by the service role directly'
);

-- D4 ---------------------------------------------------------------------------

select is_empty(
    $$ select p.schemaname || '.' || p.tablename || ': ' || p.policyname
       from pg_catalog.pg_policies as p
       where p.schemaname in ('public', 'private')
         and (
             regexp_count(coalesce(p.qual, '') || coalesce(p.with_check, ''), '(auth|private)\.\w+\(')
             <> regexp_count(coalesce(p.qual, '') || coalesce(p.with_check, ''),
                             '(?i)select\s+(auth|private)\.\w+\(')
         ) $$,
    'D4: policies call auth.*() and private helpers only inside (select ...), once per statement'
);

select is_empty(
    $$ select n.nspname || '.' || c.relname || ' ' || r.rolname || ' ' || a.cmd
       from pg_catalog.pg_policy as p
       inner join pg_catalog.pg_class as c on p.polrelid = c.oid
       inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
       inner join pg_catalog.pg_roles as r on p.polroles @> array[r.oid] or p.polroles = array[0::oid]
       cross join lateral unnest(
           case p.polcmd
               when 'r' then array['select']
               when 'a' then array['insert']
               when 'w' then array['update']
               when 'd' then array['delete']
               else array['select', 'insert', 'update', 'delete']
           end
       ) as a (cmd)
       where n.nspname in ('public', 'private') and p.polpermissive
         and not r.rolbypassrls and r.rolname not like 'pg\_%'
       group by n.nspname, c.relname, r.rolname, a.cmd
       having count(*) > 1 $$,
    'D4: at most one permissive policy per table, role and action'
);

select is_empty(
    $$ select schemaname || '.' || tablename || ': ' || policyname
       from pg_catalog.pg_policies
       where schemaname in ('public', 'private')
         and (roles @> array['public'::name] or roles @> array['anon'::name]) $$,
    'D4/D6: every policy names its roles, and none is for anon or PUBLIC'
);

-- D5 ---------------------------------------------------------------------------

select is_empty(
    $$ select con.conrelid::regclass::text || ': ' || con.conname
       from pg_catalog.pg_constraint as con
       inner join lint_tables as t on con.conrelid = t.oid
       where con.contype = 'f'
         and not exists (
             select 1
             from pg_catalog.pg_index as i
             where i.indrelid = con.conrelid
               and i.indisvalid
               and (
                   select array_agg(k order by k)
                   from unnest((string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(con.conkey)]) as k
               ) = (select array_agg(k order by k) from unnest(con.conkey) as k)
         ) $$,
    'D5: every foreign key has an index whose leading columns are its columns'
);

select is_empty(
    $$ select nspname || '.' || relname from lint_tables as t
       where relkind in ('r', 'p')
         and not exists (
             select 1 from pg_catalog.pg_constraint as con
             where con.conrelid = t.oid and con.contype = 'p'
         ) $$,
    'D5: every table has a primary key'
);

-- D6 (privileges; the RLS matrix is sql/tests/4x_rls_*.sql) ------------------

select is_empty(
    $$ select nspname || '.' || relname from lint_tables
       where pg_catalog.has_table_privilege('anon', oid, 'select, insert, update, delete, truncate, references, trigger')
          or pg_catalog.has_any_column_privilege('anon', oid, 'select, insert, update, references') $$,
    'D6: anon holds no privilege on any table or view'
);

select is_empty(
    $$ select nspname || '.' || relname from lint_tables
       where pg_catalog.has_table_privilege('authenticated', oid, 'insert, update, delete, truncate, references, trigger')
          or pg_catalog.has_any_column_privilege('authenticated', oid, 'insert, update, references') $$,
    'D6: authenticated writes nothing directly (reads are filtered by RLS)'
);

select is_empty(
    $$ select nspname || '.' || relname from lint_tables
       where relkind in ('r', 'p')
         and pg_catalog.has_table_privilege('service_role', oid, 'delete, truncate') $$,
    'the service role deletes and truncates nothing (rows are revoked or expire, history stays)'
);

-- Documentation: what PostgREST's OpenAPI and the dashboard show ---------------

select is_empty(
    $$ select nspname || '.' || relname from lint_tables
       where nspname = 'public' and pg_catalog.obj_description(oid, 'pg_class') is null
       union all
       select signature from lint_functions
       where nspname = 'public' and pg_catalog.obj_description(oid, 'pg_proc') is null $$,
    'every table, view and function in public has a comment'
);

select * from finish();
rollback;

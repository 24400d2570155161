-- The foundation: Supabase stand-in roles, auth helpers, locked doors.
begin;
select plan(9);

select has_role('anon', 'role anon exists');
select has_role('authenticated', 'role authenticated exists');
select has_role('service_role', 'role service_role exists');
select has_schema('private', 'schema private exists for helpers');

select tests.act_as_user('user_2abcDEF', '{"o": {"id": "org_1", "rol": "admin"}}');
select is(auth.jwt() ->> 'sub', 'user_2abcDEF', 'auth.jwt() reads the Clerk user id (not a uuid)');
select is(auth.jwt() -> 'o' ->> 'id', 'org_1', 'arbitrary claims reach auth.jwt()');
select is(current_user::text, 'authenticated', 'act_as_user switches to authenticated');
select tests.reset_role();

select is(
    (
        select count(*)::int
        from pg_catalog.pg_namespace as n
        where n.nspname = 'private'
            and pg_catalog.has_schema_privilege('anon', n.oid, 'usage')
    ),
    0,
    'anon cannot use schema private (authenticated may, to reach the helpers it may execute: '
    '90_security_lints lists them; private holds no relation)'
);

select is(
    (
        select count(*)::int
        from pg_catalog.pg_default_acl as d
        where d.defaclobjtype = 'f'
            and d.defaclnamespace = 0
            and pg_catalog.array_to_string(d.defaclacl, ',') like '%=X/%'
            and pg_catalog.array_to_string(d.defaclacl, ',') not like '%postgres=X/%'
    ),
    0,
    'no global default execute grant to PUBLIC'
);

select * from finish();
rollback;

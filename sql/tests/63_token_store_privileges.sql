-- Token stores: nobody but service_role reaches them, and service_role only
-- through the RPCs. SECURITY.md T7 (hashes only), D1, D2, D3, D5, D6.
begin;
select plan(67);

create temporary table token_rpcs (signature text primary key) on commit drop;
insert into token_rpcs (signature)
values
('public.create_extension_token(text, text, text, timestamptz, text, text)'),
('public.validate_extension_token(text)'),
('public.revoke_extension_token(uuid, text)'),
('public.list_extension_tokens(text)'),
('public.rotate_extension_token(text, text, timestamptz, text, text, integer)'),
('public.create_oauth_code(text, text, text, text, text, text, text, integer, text)'),
('public.consume_oauth_code(text, text, text, text)'),
('public.issue_refresh_token(text, text, text, timestamptz, text, uuid, text)'),
('public.rotate_refresh_token(text, text, text, timestamptz, integer, integer)'),
('public.revoke_refresh_token(text)'),
('public.purge_expired_tokens(interval)');

create temporary table token_helpers (signature text primary key) on commit drop;
insert into token_helpers (signature)
values
('private.require_sha256_hex(text, text)'),
('private.require_token_text(text, text, integer)'),
('private.pkce_s256(text)'),
('private.lock_refresh_family(uuid)');

create temporary table token_tables (name name primary key) on commit drop;
insert into token_tables (name)
values ('extension_tokens'), ('oauth_codes'), ('refresh_tokens');

-- Tables: RLS on, no policies, no privileges for any API role (D1, D6) --------

select has_table('public', name, format('%s exists in public', name))
from token_tables
order by name;

select is_empty(
    $$select c.relname from pg_class as c
      where c.relnamespace = 'public'::regnamespace
          and c.relname in (select name from token_tables)
          and not c.relrowsecurity$$,
    'D1: every token store has row level security enabled'
);

select is_empty(
    $$select tablename, policyname from pg_policies
      where schemaname = 'public' and tablename in (select name from token_tables)$$,
    'no policy opens a token store to anyone: RLS denies anon and authenticated everything'
);

select table_privs_are('public', t.name, r.role, array[]::name[], format('%s has no privilege on %s', r.role, t.name))
from token_tables as t
cross join (values ('anon'::name), ('authenticated'), ('service_role')) as r (role)
order by t.name, r.role;

select has_pk('public', name, format('%s has a primary key', name))
from token_tables
order by name;

select is_empty(
    $$select c.conrelid::regclass, c.conname
      from pg_constraint as c
      where c.contype = 'f'
          and c.conrelid in ('public.extension_tokens'::regclass, 'public.oauth_codes'::regclass,
                             'public.refresh_tokens'::regclass)
          and not exists (
              select 1 from pg_index as i
              where i.indrelid = c.conrelid
                  and (i.indkey::int2 [])[0:array_length(c.conkey, 1) - 1] = c.conkey
          )$$,
    'D5: every foreign key of the token stores has a covering index'
);

select is_empty(
    $$select a.attrelid::regclass, a.attname
      from pg_attribute as a
      where a.attrelid in ('public.extension_tokens'::regclass, 'public.oauth_codes'::regclass,
                           'public.refresh_tokens'::regclass)
          and a.attnum > 0 and not a.attisdropped
          and a.attname ~ '(token|code|secret)$'
          and a.attname <> 'code_challenge'$$,
    'T7: no column is named like a raw secret; tokens and codes are stored as *_hash only'
);

-- RPCs: security definer, search_path = '', service_role only (D2, D3) --------

select is_empty(
    $$select signature from token_rpcs as r
      join pg_proc as p on p.oid = r.signature::regprocedure
      where not p.prosecdef or not coalesce(p.proconfig @> array['search_path=""'], false)$$,
    'D2: every token RPC is security definer with search_path set to the empty string'
);

select is_empty(
    $$select signature from token_helpers as h
      join pg_proc as p on p.oid = h.signature::regprocedure
      where not coalesce(p.proconfig @> array['search_path=""'], false)$$,
    'D2: every private helper has search_path set to the empty string'
);

select is_empty(
    $$select r.signature from token_rpcs as r
      join pg_proc as p on p.oid = r.signature::regprocedure
      where obj_description(p.oid, 'pg_proc') is null
      union all
      select t.name from token_tables as t
      where obj_description(('public.' || t.name)::regclass, 'pg_class') is null$$,
    'every token store and RPC has a comment (what PostgREST and the dashboard show)'
);

select
    function_privs_are(
        'public',
        split_part(split_part(r.signature, '(', 1), '.', 2)::name,
        string_to_array(rtrim(split_part(r.signature, '(', 2), ')'), ', ')::name[],
        g.role,
        case when g.role = 'service_role' then array['EXECUTE']::name[] else array[]::name[] end,
        format(
            '%s %s execute %s',
            g.role,
            case when g.role = 'service_role' then 'may' else 'may not' end,
            r.signature
        )
    )
from token_rpcs as r
cross join (values ('anon'::name), ('authenticated'), ('service_role')) as g (role)
order by r.signature, g.role;

select is_empty(
    $$select h.signature, g.role
      from token_helpers as h
      cross join (values ('anon'), ('authenticated'), ('service_role')) as g (role)
      where has_function_privilege(g.role, h.signature::regprocedure, 'execute')$$,
    'no API role executes the private helpers'
);

-- What each role meets when it tries anyway ---------------------------------------

select tests.act_as_anon();
select throws_ok(
    'select count(*) from public.extension_tokens',
    '42501',
    null,
    'D6: anon cannot read extension_tokens'
);
select throws_ok(
    $$select public.validate_extension_token(repeat('a', 64))$$,
    '42501',
    null,
    'D3: anon cannot execute validate_extension_token'
);
select throws_ok(
    $$select public.consume_oauth_code(repeat('a', 64), 'c', 'r', repeat('v', 43))$$,
    '42501',
    null,
    'D3: anon cannot execute consume_oauth_code'
);

select tests.act_as_user('user_alice');
select throws_ok(
    'select count(*) from public.refresh_tokens',
    '42501',
    null,
    'D6: a signed-in user cannot read refresh_tokens'
);
select throws_ok(
    $$insert into public.oauth_codes (code_hash, clerk_user_id, client_id, redirect_uri, code_challenge, expires_at)
      values (repeat('a', 64), 'user_alice', 'c', 'r', repeat('A', 43), now() + interval '1 minute')$$,
    '42501',
    null,
    'a signed-in user cannot write oauth_codes'
);
select throws_ok(
    $$select public.list_extension_tokens('user_alice')$$,
    '42501',
    null,
    'D3: a signed-in user cannot list tokens through the RPC, not even their own'
);

select tests.act_as_service_role();
select throws_ok(
    'select count(*) from public.oauth_codes',
    '42501',
    null,
    'service_role cannot read a token store directly'
);
select throws_ok(
    'delete from public.refresh_tokens',
    '42501',
    null,
    'service_role cannot delete from a token store directly'
);
select throws_ok(
    $$update public.extension_tokens set revoked_at = null$$,
    '42501',
    null,
    'service_role cannot un-revoke a token directly'
);
select throws_ok(
    $$select private.pkce_s256('x')$$,
    '42501',
    null,
    'service_role cannot call the private helpers'
);
select lives_ok(
    $$select public.create_extension_token('user_alice', repeat('b', 64), 'Laptop', now() + interval '1 day')$$,
    'service_role works through the RPCs'
);

select * from finish();
rollback;

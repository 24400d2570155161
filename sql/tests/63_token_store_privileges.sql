-- Token stores: nobody but service_role reaches them, and service_role only
-- through the RPCs. SECURITY.md T7 (hashes only), D1, D2, D3, D5, D6.
begin;
select plan(80);

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
('private.lock_refresh_family(uuid)'),
('private.extension_token_refusal(text)'),
('private.token_grant_ok(text, text, text, uuid, uuid, uuid)'),
('private.token_grant_refusal(text, text, boolean, integer)');

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

-- One result convention (docs/database.md, "Conventions") ---------------------------

select is_empty(
    $$select p.oid::regprocedure
      from pg_proc as p
      where p.pronamespace = 'public'::regnamespace
          and p.proname in (
              'check_org_scope', 'create_extension_token', 'validate_extension_token',
              'revoke_extension_token', 'list_extension_tokens', 'rotate_extension_token',
              'create_oauth_code', 'consume_oauth_code', 'issue_refresh_token', 'rotate_refresh_token',
              'revoke_refresh_token', 'purge_expired_tokens', 'create_device_code', 'decide_device_code',
              'poll_device_code', 'purge_expired_device_codes'
          )
          and p.prorettype in ('json'::regtype, 'jsonb'::regtype)$$,
    'no token-store RPC answers in jsonb: named composites, a table, or one scalar'
);
select function_returns(
    'public', 'check_org_scope', array['text', 'text'], 'org_scope_result',
    'check_org_scope returns public.org_scope_result'
);
select function_returns(
    'public', 'validate_extension_token', array['text'], 'extension_token_result',
    'validate_extension_token returns public.extension_token_result'
);
select function_returns(
    'public', 'rotate_extension_token', array['text', 'text', 'timestamp with time zone', 'text', 'text', 'integer'],
    'extension_token_result', 'rotate_extension_token returns public.extension_token_result'
);
select ok(
    (select p.proretset from pg_proc as p where p.oid = 'public.list_extension_tokens(text)'::regprocedure),
    'list_extension_tokens returns a table (one row per token)'
);
select function_returns(
    'public', 'consume_oauth_code', array['text', 'text', 'text', 'text'], 'token_grant_result',
    'consume_oauth_code returns public.token_grant_result'
);
select function_returns(
    'public', 'rotate_refresh_token', array['text', 'text', 'text', 'timestamp with time zone', 'integer', 'integer'],
    'token_grant_result', 'rotate_refresh_token returns public.token_grant_result'
);
select function_returns(
    'public', 'poll_device_code', array['text', 'text'], 'token_grant_result',
    'poll_device_code returns public.token_grant_result, like the other grants of the token endpoint'
);
select function_returns(
    'public', 'decide_device_code', array['text', 'text', 'boolean', 'text', 'text'], 'device_decision_result',
    'decide_device_code returns public.device_decision_result'
);
select function_returns(
    'public', 'purge_expired_tokens', array['interval'], 'token_purge_result',
    'purge_expired_tokens returns public.token_purge_result'
);
select
    function_privs_are(
        'public', 'check_org_scope', array['text', 'text'], g.role,
        case when g.role = 'service_role' then array['EXECUTE']::name[] else array[]::name[] end,
        format('%s %s execute check_org_scope', g.role, case when g.role = 'service_role' then 'may' else 'may not' end)
    )
from (values ('anon'::name), ('authenticated'), ('service_role')) as g (role);

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
